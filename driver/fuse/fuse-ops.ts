import type { Logger } from "../../common/log.js";
import { DriverError, Errno, errnoOf } from "../errors.js";
import type { FileTable } from "../files/file-table.js";
import type { Namespace } from "../namespace/namespace.js";
import { S_IFREG } from "../s3/metadata.js";
import { toFuseStat } from "./stat.js";

type Done = (...args: unknown[]) => void;

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
// What the patched fuse-native passes to utimens for a time that is not to be set (2^53 - 1).
const UTIME_OMIT_MS = Number.MAX_SAFE_INTEGER;

// The fuse-native operation table: each callback starts one async operation and answers the
// kernel with its result or a negative errno. The JS side stays light: copies and S3 calls only.
export function fuseOps(
  ns: Namespace,
  files: FileTable,
  owner: { uid: number; gid: number },
  logger: Logger,
) {
  const run = <T>(op: string, path: string, work: () => Promise<T>, answer: (value: T) => void, cb: Done) => {
    const started = logger.isLevelEnabled("trace") ? performance.now() : 0;
    work().then(
      (value) => {
        if (started) logger.trace({ op, path, ms: performance.now() - started }, "operation done");
        answer(value);
      },
      (err: unknown) => {
        const errno = errnoOf(err);
        if (errno === Errno.EIO) logger.error({ err, op, path }, "operation failed with EIO");
        else logger.debug({ op, path, errno, msg: (err as Error).message }, "operation failed");
        cb(errno);
      },
    );
  };
  const plain = (op: string, path: string, work: () => Promise<unknown>, cb: Done) =>
    run(op, path, work, () => cb(0), cb);

  // Opens an existing file after a fresh stat (its ETag pins every later read).
  const openExisting = async (path: string, flags: number): Promise<number> => {
    const { bucket, key } = ns.objectOf(path);
    const open = files.openFile(bucket, key);
    const chunked = files.chunkedEntry(bucket, key);
    if ((!open || files.isStale(open)) && !chunked) {
      let entry: Awaited<ReturnType<Namespace["getattr"]>>;
      try {
        entry = await ns.getattr(path);
      } catch (err) {
        // The kernel sends open (not create) while its dentry cache still holds a file that
        // is gone: a new file whose only upload failed, or one deleted behind the mount.
        // FUSE strips O_CREAT, so an open that truncates for writing is treated as the
        // create it almost always was (`> file`); any other open gets ENOENT.
        // So is an open for writing of a new file whose only upload failed (FileTable.lost):
        // without atomic_o_trunc the kernel strips O_TRUNC too, and truncates afterwards.
        if (
          errnoOf(err) === Errno.ENOENT &&
          (flags & O_ACCMODE) !== 0 &&
          ((flags & O_TRUNC) !== 0 || files.wasLost(bucket, key))
        ) {
          const fh = files.create(bucket, key, 0o644);
          ns.stats.delete(path);
          return fh;
        }
        throw err;
      }
      if (entry.type === "dir")
        throw new DriverError("DRIVER_NOT_SUPPORTED", `${path} is a directory`, { errno: Errno.EISDIR });
      const fh = files.open(bucket, key, {
        etag: entry.etag ?? "",
        size: entry.size,
        meta: {
          mode: S_IFREG | (entry.perm ?? 0o644),
          uid: entry.uid ?? owner.uid,
          gid: entry.gid ?? owner.gid,
          mtimeMs: entry.mtimeMs,
        },
      });
      return fh;
    }
    if (chunked?.readOnly && (flags & O_ACCMODE) !== 0)
      throw new DriverError("DRIVER_NOT_SUPPORTED", `${path} is read-only`, { errno: Errno.EROFS });
    return files.open(bucket, key, undefined);
  };

  return {
    init: (cb: Done) => cb(0),
    access: (_path: string, _mode: number, cb: Done) => cb(0),
    statfs: (_path: string, cb: Done) =>
      cb(0, {
        bsize: 1024 * 1024,
        frsize: 1024 * 1024,
        blocks: 2 ** 30,
        bfree: 2 ** 30,
        bavail: 2 ** 30,
        files: 2 ** 30,
        ffree: 2 ** 30,
        favail: 2 ** 30,
        fsid: 0x5f05,
        flag: 0,
        namemax: 1024,
      }),
    getattr: (path: string, cb: Done) =>
      run(
        "getattr",
        path,
        () => ns.getattr(path),
        (entry) => cb(0, toFuseStat(entry, owner)),
        cb,
      ),
    fgetattr: (path: string, _fd: number, cb: Done) =>
      run(
        "getattr",
        path,
        () => ns.getattr(path),
        (entry) => cb(0, toFuseStat(entry, owner)),
        cb,
      ),
    readdir: (path: string, cb: Done) =>
      run(
        "readdir",
        path,
        () => ns.readdir(path),
        (names) => cb(0, [".", "..", ...names]),
        cb,
      ),
    open: (path: string, flags: number, cb: Done) =>
      run(
        "open",
        path,
        () => openExisting(path, flags),
        (fh) => cb(0, fh),
        cb,
      ),
    create: (path: string, mode: number, cb: Done) =>
      run(
        "create",
        path,
        async () => {
          const { bucket, key } = ns.objectOf(path);
          const fh = files.create(bucket, key, mode);
          ns.stats.delete(path);
          return fh;
        },
        (fh) => cb(0, fh),
        cb,
      ),
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Done) =>
      run(
        "read",
        path,
        () => files.read(fd, buf, len, pos),
        (n) => cb(n),
        cb,
      ),
    write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Done) =>
      run(
        "write",
        path,
        () => files.write(fd, buf.subarray(0, len), pos),
        () => cb(len),
        cb,
      ),
    flush: (path: string, fd: number, cb: Done) =>
      plain("flush", path, () => files.flush(fd, { deferEmpty: true }), cb),
    fsync: (path: string, _datasync: number, fd: number, cb: Done) =>
      plain("fsync", path, () => files.flush(fd), cb),
    release: (path: string, fd: number, cb: Done) => plain("release", path, () => files.release(fd), cb),
    truncate: (path: string, size: number, cb: Done) =>
      plain(
        "truncate",
        path,
        async () => {
          const { bucket, key } = ns.objectOf(path);
          const open = files.openFile(bucket, key);
          if (open) return await files.truncate(open, size);
          // The kernel truncates a file it still holds a dentry for before opening it with
          // O_TRUNC (`> file`): truncating a missing object to 0 is that same create, as
          // in openExisting (CI saw ENOENT here right after the file's only upload failed).
          const fh = await openExisting(path, size === 0 ? 1 | O_TRUNC : 1);
          try {
            await files.truncate(files.fileOf(fh), size);
            await files.flush(fh);
          } finally {
            await files.release(fh);
          }
        },
        cb,
      ),
    ftruncate: (path: string, fd: number, size: number, cb: Done) =>
      plain("ftruncate", path, () => files.truncate(files.fileOf(fd), size), cb),
    unlink: (path: string, cb: Done) => plain("unlink", path, () => ns.unlink(path), cb),
    mkdir: (path: string, mode: number, cb: Done) => plain("mkdir", path, () => ns.mkdir(path, mode), cb),
    rmdir: (path: string, cb: Done) => plain("rmdir", path, () => ns.rmdir(path), cb),
    rename: (from: string, to: string, cb: Done) => plain("rename", from, () => ns.rename(from, to), cb),
    symlink: (target: string, path: string, cb: Done) =>
      plain("symlink", path, () => ns.symlink(target, path), cb),
    readlink: (path: string, cb: Done) =>
      run(
        "readlink",
        path,
        () => ns.readlink(path),
        (target) => cb(0, target),
        cb,
      ),
    chmod: (path: string, mode: number, cb: Done) =>
      plain("chmod", path, () => ns.setattr(path, { perm: mode & 0o7777 }), cb),
    chown: (path: string, uid: number, gid: number, cb: Done) =>
      plain(
        "chown",
        path,
        () =>
          ns.setattr(path, {
            uid: uid === 0xffffffff ? undefined : uid,
            gid: gid === 0xffffffff ? undefined : gid,
          }),
        cb,
      ),
    // Only mtime is kept (S3 metadata has no atime). With patches/fuse-native+2.2.6.patch the
    // binding passes the real mtime, UTIME_NOW as the current time and UTIME_OMIT (`touch -a`)
    // as UTIME_OMIT_MS, which leaves the stored mtime alone.
    utimens: (path: string, _atime: number, mtime: number, cb: Done) => {
      if (mtime === UTIME_OMIT_MS) return cb(0);
      plain("utimens", path, () => ns.setattr(path, { mtimeMs: mtime }), cb);
    },
    link: (from: string, to: string, cb: Done) => {
      logger.warn(
        { from, to },
        "hard links are not supported: an S3 object cannot have two keys sharing one body",
      );
      cb(Errno.ENOTSUP);
    },
  };
}
