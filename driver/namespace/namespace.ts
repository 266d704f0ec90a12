import type { Logger } from "../../common/log.js";
import { DriverError, Errno } from "../errors.js";
import type { FileTable } from "../files/file-table.js";
import type { OpenFile } from "../files/open-file.js";
import { type FileMeta, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "../s3/metadata.js";
import type { ObjectInfo, S3Ops } from "../s3/s3-ops.js";
import { dirPrefix, type Location, parsePath, pathOf } from "./paths.js";
import { renamePath } from "./rename.js";
import { type Entry, StatCache } from "./stat-cache.js";

export interface NamespaceOptions {
  s3: S3Ops;
  files: FileTable;
  buckets: string[];
  statTtlMs: number;
  concurrency: number;
  uid: number;
  gid: number;
  logger: Logger;
}

// Objects up to this size come whole with their lookup (one request to stat and read them).
const LOOKUP_BYTES = 128 * 1024;

const enoent = (path: string) =>
  new DriverError("DRIVER_NOT_FOUND", `${path} does not exist`, { errno: Errno.ENOENT });
const eacces = (path: string, why: string) =>
  new DriverError("DRIVER_NOT_SUPPORTED", `${path}: ${why}`, { errno: Errno.EACCES });

function entryOf(info: ObjectInfo): Entry {
  const type = info.meta.mode !== undefined && (info.meta.mode & S_IFMT) === S_IFLNK ? "symlink" : "file";
  return {
    type,
    size: info.size,
    mtimeMs: info.meta.mtimeMs ?? info.mtimeMs,
    perm: info.meta.mode !== undefined ? info.meta.mode & 0o7777 : undefined,
    uid: info.meta.uid,
    gid: info.meta.gid,
    etag: info.etag,
  };
}

// The directory tree over S3: lookups, listings and namespace changes (mkdir, rmdir, unlink,
// rename, symlink, attributes). File contents are FileTable's.
export class Namespace {
  readonly stats: StatCache;
  private bucketList: { names: string[]; expires: number } | undefined;

  constructor(readonly o: NamespaceOptions) {
    this.stats = new StatCache(o.statTtlMs);
    o.files.onFlushed = (state, file) => {
      if (state.chunks) return;
      this.stats.set(pathOf(state.bucket, state.key), {
        type: "file",
        size: state.size,
        mtimeMs: file.meta.mtimeMs ?? Date.now(),
        perm: (file.meta.mode ?? 0o644) & 0o7777,
        uid: file.meta.uid,
        gid: file.meta.gid,
        etag: state.etag,
      });
    };
    o.files.onChanged = (file) => this.stats.delete(pathOf(file.bucket, file.key));
  }

  locate(path: string): Location {
    const loc = parsePath(path);
    if (!loc) throw enoent(path);
    return loc;
  }

  objectOf(path: string): { bucket: string; key: string } {
    const loc = this.locate(path);
    if (loc.kind !== "object") throw eacces(path, "only keys inside a bucket can be files");
    return loc;
  }

  async buckets(): Promise<string[]> {
    if (this.bucketList && this.bucketList.expires > Date.now()) return this.bucketList.names;
    const listed = (await this.o.s3.listBuckets()) ?? [];
    const names = [...new Set([...this.o.buckets, ...listed])].sort();
    this.bucketList = { names, expires: Date.now() + 60_000 };
    return names;
  }

  private openEntry(file: OpenFile): Entry {
    return {
      type: "file",
      size: file.size,
      mtimeMs: file.mode === "clean" ? (file.meta.mtimeMs ?? file.mtimeMs) : file.mtimeMs,
      perm: (file.meta.mode ?? 0o644) & 0o7777,
      uid: file.meta.uid,
      gid: file.meta.gid,
      etag: file.base?.etag,
    };
  }

  // What stat says about `path`; throws ENOENT when it does not exist.
  async getattr(path: string): Promise<Entry> {
    const loc = this.locate(path);
    if (loc.kind === "root" || loc.kind === "s3") return { type: "dir", size: 4096, mtimeMs: Date.now() };
    if (loc.kind === "bucket") {
      const cached = this.stats.get(path);
      if (cached) return cached;
      if ((await this.buckets()).includes(loc.bucket))
        return { type: "dir", size: 4096, mtimeMs: Date.now() };
      try {
        await this.o.s3.listPage(loc.bucket, "", { maxKeys: 1 });
      } catch (err) {
        if (err instanceof DriverError && err.errno === Errno.ENOENT) throw enoent(path);
        throw err;
      }
      const entry: Entry = { type: "dir", size: 4096, mtimeMs: Date.now() };
      this.stats.set(path, entry);
      return entry;
    }
    const open = this.o.files.openFile(loc.bucket, loc.key);
    if (open && (!open.unlinked || isHidden(loc.key)) && !this.o.files.isStale(open))
      return this.openEntry(open);
    const chunked = this.o.files.chunkedEntry(loc.bucket, loc.key);
    if (chunked)
      return {
        type: "file",
        size: chunked.file.size,
        mtimeMs: chunked.mtimeMs,
        perm: chunked.readOnly ? 0o444 : 0o644,
      };
    const cached = this.stats.get(path);
    if (cached === null) throw enoent(path);
    if (cached && (!cached.partial || cached.type === "dir")) return cached;
    const entry = await this.lookup(loc.bucket, loc.key);
    this.stats.set(path, entry);
    if (!entry) {
      if (
        this.o.files.chunkedUnder(loc.bucket, dirPrefix(loc.key)).length > 0 ||
        this.o.files.openUnder(loc.bucket, dirPrefix(loc.key)).length > 0
      )
        return { type: "dir", size: 4096, mtimeMs: Date.now() };
      throw enoent(path);
    }
    return entry;
  }

  // HEAD the key; only when there is no such object, list "key/" to find a directory. One
  // request per file rather than HEAD and LIST in parallel: opening many small files is the
  // common case, and a LIST costs the server (and the S3 bill) far more than a HEAD. A missing
  // name (a file about to be created) pays the two requests in sequence.
  // The lookup is a GET of the first LOOKUP_BYTES rather than a HEAD (same request class and
  // latency): a file that small comes whole with it, and its first read needs no request.
  private async lookup(bucket: string, key: string): Promise<Entry | null> {
    const found = await this.o.s3.lookup(bucket, key, LOOKUP_BYTES);
    if (found) {
      if (found.body)
        this.o.files.offerBody({ bucket, key, etag: found.info.etag, size: found.info.size }, found.body);
      return entryOf(found.info);
    }
    const dirPage = await this.o.s3.listPage(bucket, `${key}/`, { maxKeys: 1 });
    if (dirPage.files.length > 0 || dirPage.prefixes.length > 0) {
      const marker = dirPage.files.find((f) => f.key === `${key}/`);
      return { type: "dir", size: 4096, mtimeMs: marker?.mtimeMs ?? Date.now(), perm: 0o755 };
    }
    return null;
  }

  // The names in a directory: every page of the listing, plus files that exist only here
  // (open, not yet uploaded) and chunked files.
  async readdir(path: string): Promise<string[]> {
    const loc = this.locate(path);
    if (loc.kind === "root") return ["s3"];
    if (loc.kind === "s3") return await this.buckets();
    const bucket = loc.bucket;
    const key = loc.kind === "object" ? loc.key : "";
    const prefix = dirPrefix(key);
    const names = new Set<string>();
    for await (const page of this.o.s3.listAll(bucket, prefix)) {
      for (const f of page.files) {
        const name = f.key.slice(prefix.length);
        if (!name || name.includes("/")) continue;
        names.add(name);
        const childPath = pathOf(bucket, f.key);
        const known = this.stats.get(childPath);
        if (!known || known.partial)
          this.stats.set(childPath, {
            type: "file",
            size: f.size,
            mtimeMs: f.mtimeMs,
            etag: f.etag,
            partial: true,
          });
      }
      for (const p of page.prefixes) {
        const name = p.slice(prefix.length).replace(/\/$/, "");
        if (!name || name.includes("/")) continue;
        names.add(name);
        const childPath = pathOf(bucket, `${prefix}${name}`);
        if (!this.stats.get(childPath))
          this.stats.set(childPath, { type: "dir", size: 4096, mtimeMs: Date.now(), partial: true });
      }
    }
    const local = [
      ...this.o.files.openUnder(bucket, prefix).map((f) => f.key),
      ...this.o.files.chunkedUnder(bucket, prefix).map((c) => c.key),
    ];
    for (const k of local) {
      const rest = k.slice(prefix.length);
      const name = rest.split("/")[0];
      if (name) names.add(name);
    }
    return [...names];
  }

  private meta(mode: number, mtimeMs = Date.now()): FileMeta {
    return { mode, uid: this.o.uid, gid: this.o.gid, mtimeMs };
  }

  async mkdir(path: string, mode: number): Promise<void> {
    const { bucket, key } = this.objectOf(path);
    await this.o.s3.put(bucket, `${key}/`, Buffer.alloc(0), { meta: this.meta(S_IFDIR | (mode & 0o7777)) });
    this.stats.set(path, { type: "dir", size: 4096, mtimeMs: Date.now(), perm: mode & 0o7777 });
  }

  // Rename of a file (copy, then delete) or of a whole directory (every key below it).
  async rename(from: string, to: string): Promise<void> {
    await renamePath(this, from, to);
  }

  async rmdir(path: string): Promise<void> {
    const { bucket, key } = this.objectOf(path);
    const prefix = `${key}/`;
    const page = await this.o.s3.listPage(bucket, prefix, { maxKeys: 2 });
    const others = page.files.filter((f) => f.key !== prefix).length + page.prefixes.length;
    if (
      others > 0 ||
      this.o.files.openUnder(bucket, prefix).length > 0 ||
      this.o.files.chunkedUnder(bucket, prefix).length > 0
    )
      throw new DriverError("DRIVER_NOT_SUPPORTED", `${path} is not empty`, { errno: Errno.ENOTEMPTY });
    await this.o.s3.delete(bucket, prefix);
    this.stats.deleteTree(path);
    this.stats.set(path, null);
  }

  async unlink(path: string): Promise<void> {
    const { bucket, key } = this.objectOf(path);
    const open = this.o.files.openFile(bucket, key);
    if (open) open.unlinked = true;
    // libfuse removes the name it hid an unlinked open file under: it only ever existed here.
    if (isHidden(key) && (!open || open.unlinked) && !this.o.files.chunkedEntry(bucket, key)) {
      this.stats.set(path, null);
      return;
    }
    if (this.o.files.removeChunked(bucket, key)) {
      this.stats.set(path, null);
      return;
    }
    await this.o.s3.delete(bucket, key);
    this.stats.set(path, null);
  }

  async symlink(target: string, path: string): Promise<void> {
    const { bucket, key } = this.objectOf(path);
    const body = Buffer.from(target);
    const etag = await this.o.s3.put(bucket, key, body, { meta: this.meta(S_IFLNK | 0o777) });
    this.stats.set(path, {
      type: "symlink",
      size: body.length,
      mtimeMs: Date.now(),
      perm: 0o777,
      etag,
      target,
    });
  }

  async readlink(path: string): Promise<string> {
    const entry = await this.getattr(path);
    if (entry.type !== "symlink")
      throw new DriverError("DRIVER_NOT_SUPPORTED", `${path} is not a symlink`, { errno: Errno.EINVAL });
    if (entry.target !== undefined) return entry.target;
    const { bucket, key } = this.objectOf(path);
    const target = (await this.o.s3.getSmall(bucket, key)).toString("utf8");
    this.stats.set(path, { ...entry, target });
    return target;
  }

  // chmod/chown/utimens: metadata of an open file changes in place (written at its flush); a
  // stored object is copied onto itself with the new metadata.
  async setattr(
    path: string,
    change: { perm?: number; uid?: number; gid?: number; mtimeMs?: number },
  ): Promise<void> {
    const loc = this.locate(path);
    if (loc.kind !== "object") return;
    const open = this.o.files.openFile(loc.bucket, loc.key);
    if (open && !open.unlinked && (open.dirty || open.mode !== "clean")) {
      const mode =
        change.perm !== undefined ? ((open.meta.mode ?? S_IFREG) & S_IFMT) | change.perm : open.meta.mode;
      open.meta = {
        ...open.meta,
        ...stripUndefined({ uid: change.uid, gid: change.gid, mtimeMs: change.mtimeMs }),
        mode,
      };
      open.metaChanged = true;
      if (change.mtimeMs !== undefined) open.mtimeMs = change.mtimeMs;
      return;
    }
    if (this.o.files.chunkedEntry(loc.bucket, loc.key)) return;
    const entry = await this.getattr(path);
    const key = entry.type === "dir" ? `${loc.key}/` : loc.key;
    const info = await this.o.s3.head(loc.bucket, key);
    const typeBits = entry.type === "dir" ? S_IFDIR : entry.type === "symlink" ? S_IFLNK : S_IFREG;
    const old = info?.meta ?? {};
    const meta: FileMeta = {
      mode:
        typeBits |
        (change.perm ??
          (old.mode !== undefined
            ? old.mode & 0o7777
            : (entry.perm ?? (entry.type === "dir" ? 0o755 : 0o644)))),
      uid: change.uid ?? old.uid ?? this.o.uid,
      gid: change.gid ?? old.gid ?? this.o.gid,
      mtimeMs: change.mtimeMs ?? old.mtimeMs ?? entry.mtimeMs,
    };
    if (!info) {
      if (entry.type === "dir") await this.o.s3.put(loc.bucket, key, Buffer.alloc(0), { meta });
      this.stats.delete(path);
      return;
    }
    const etag = await this.o.s3.copy(
      { bucket: loc.bucket, key, size: info.size },
      { bucket: loc.bucket, key },
      { meta, contentType: info.contentType },
    );
    // Same bytes, new ETag: an open reader must pin the new version or its GETs would fail.
    if (open) {
      open.meta = meta;
      if (open.base && etag) open.base = { ...open.base, etag };
    }
    this.stats.delete(path);
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// Whether a key's last component is a name libfuse hides unlinked open files under.
export function isHidden(key: string): boolean {
  return key.slice(key.lastIndexOf("/") + 1).startsWith(".fuse_hidden");
}
