import { forEachBounded } from "../../common/for-each-bounded.js";
import { DriverError, Errno } from "../errors.js";
import type { OpenFile } from "../files/open-file.js";
import { isHidden, type Namespace } from "./namespace.js";
import { pathOf } from "./paths.js";

// Rename of a file (copy, then delete) or of a whole directory (every key below it).
export async function renamePath(ns: Namespace, from: string, to: string): Promise<void> {
  const src = ns.objectOf(from);
  const dst = ns.objectOf(to);
  const open = ns.o.files.openFile(src.bucket, src.key);
  if (open && isHidden(dst.key)) return await hide(ns, from, open, dst);
  const entry = await ns.getattr(from);
  if (entry.type !== "dir") {
    const target = ns.stats.get(to);
    if (target && target.type === "dir")
      throw new DriverError("DRIVER_NOT_SUPPORTED", `${to} is a directory`, { errno: Errno.EISDIR });
    await renameFile(ns, src, dst);
  } else {
    await renameDir(ns, src, dst);
  }
  ns.stats.deleteTree(from);
  ns.stats.deleteTree(to);
  ns.stats.set(from, null);
}

// libfuse (without hard_remove) renames a file that is unlinked while open to
// ".fuse_hidden...", so that it stays usable through its descriptors. On S3 that is an
// unlink: the object goes now, the open file lives on in the mount under the hidden name and
// is never uploaded; libfuse unlinks the hidden name at the last close.
async function hide(
  ns: Namespace,
  from: string,
  open: OpenFile,
  dst: { bucket: string; key: string },
): Promise<void> {
  const { bucket, key } = open;
  open.unlinked = true;
  if (!ns.o.files.removeChunked(bucket, key)) await ns.o.s3.delete(bucket, key);
  ns.o.files.rekey(open, dst.bucket, dst.key);
  ns.stats.set(from, null);
}

async function renameFile(
  ns: Namespace,
  src: { bucket: string; key: string },
  dst: { bucket: string; key: string },
): Promise<void> {
  if (ns.o.files.chunkedEntry(src.bucket, src.key)) {
    ns.o.files.moveChunked(src, dst);
    return;
  }
  const open = ns.o.files.openFile(src.bucket, src.key);
  if (open?.dirty) await ns.o.files.flushFile(open);
  const info = await ns.o.s3.head(src.bucket, src.key);
  if (!info)
    throw new DriverError("DRIVER_NOT_FOUND", `${pathOf(src.bucket, src.key)} does not exist`, {
      errno: Errno.ENOENT,
    });
  const etag = await ns.o.s3.copy({ ...src, size: info.size }, dst);
  await ns.o.s3.delete(src.bucket, src.key);
  if (open) {
    ns.o.files.rekey(open, dst.bucket, dst.key);
    if (open.base && etag) open.base = { ...open.base, etag };
  }
}

async function renameDir(
  ns: Namespace,
  src: { bucket: string; key: string },
  dst: { bucket: string; key: string },
): Promise<void> {
  const from = `${src.key}/`;
  const to = `${dst.key}/`;
  if (dst.bucket === src.bucket && to.startsWith(from))
    throw new DriverError("DRIVER_NOT_SUPPORTED", `Cannot move ${pathOf(src.bucket, src.key)} into itself`, {
      errno: Errno.EINVAL,
    });
  for (const file of ns.o.files.openUnder(src.bucket, from)) if (file.dirty) await ns.o.files.flushFile(file);
  const keys: Array<{ key: string; size: number }> = [];
  for await (const page of ns.o.s3.listAll(src.bucket, from, { recursive: true }))
    for (const f of page.files) keys.push({ key: f.key, size: f.size });
  await forEachBounded(keys, ns.o.concurrency, async (k) => {
    await ns.o.s3.copy(
      { bucket: src.bucket, key: k.key, size: k.size },
      { bucket: dst.bucket, key: to + k.key.slice(from.length) },
    );
  });
  await forEachBounded(keys, ns.o.concurrency, async (k) => {
    await ns.o.s3.delete(src.bucket, k.key);
  });
  for (const file of ns.o.files.openUnder(src.bucket, from))
    ns.o.files.rekey(file, dst.bucket, to + file.key.slice(from.length));
  for (const c of ns.o.files.chunkedUnder(src.bucket, from))
    ns.o.files.moveChunked(
      { bucket: src.bucket, key: c.key },
      { bucket: dst.bucket, key: to + c.key.slice(from.length) },
    );
}
