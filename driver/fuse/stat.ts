import type { Entry } from "../namespace/stat-cache.js";
import { S_IFDIR, S_IFLNK, S_IFREG } from "../s3/metadata.js";

// A stat result in the shape fuse-native packs for the kernel.
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  blocks: number;
  blksize: number;
}

export function toFuseStat(entry: Entry, owner: { uid: number; gid: number }): FuseStat {
  const type = entry.type === "dir" ? S_IFDIR : entry.type === "symlink" ? S_IFLNK : S_IFREG;
  const perm = entry.type === "symlink" ? 0o777 : (entry.perm ?? (entry.type === "dir" ? 0o755 : 0o644));
  const time = new Date(entry.mtimeMs);
  return {
    mode: type | perm,
    uid: entry.uid ?? owner.uid,
    gid: entry.gid ?? owner.gid,
    size: entry.size,
    nlink: entry.type === "dir" ? 2 : 1,
    mtime: time,
    atime: time,
    ctime: time,
    blocks: Math.ceil(entry.size / 512),
    blksize: 128 * 1024,
  };
}
