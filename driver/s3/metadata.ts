// File attributes kept as S3 user metadata, in the s3fs format so that either tool can read
// the other's objects: x-amz-meta-mode (decimal st_mode with the type bits),
// x-amz-meta-uid, x-amz-meta-gid, x-amz-meta-mtime (decimal seconds since the epoch).
export interface FileMeta {
  mode?: number;
  uid?: number;
  gid?: number;
  // Milliseconds since the epoch.
  mtimeMs?: number;
}

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

// SDK `Metadata` map (keys without the x-amz-meta- prefix) for these attributes.
export function encodeMeta(meta: FileMeta): Record<string, string> {
  const out: Record<string, string> = {};
  if (meta.mode !== undefined) out.mode = String(meta.mode);
  if (meta.uid !== undefined) out.uid = String(meta.uid);
  if (meta.gid !== undefined) out.gid = String(meta.gid);
  if (meta.mtimeMs !== undefined) out.mtime = String(Math.floor(meta.mtimeMs / 1000));
  return out;
}

function num(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

// Attributes from an SDK `Metadata` map; absent or malformed values stay undefined.
export function decodeMeta(metadata: Record<string, string> | undefined): FileMeta {
  if (!metadata) return {};
  const mtime = num(metadata.mtime);
  return {
    mode: num(metadata.mode),
    uid: num(metadata.uid),
    gid: num(metadata.gid),
    mtimeMs: mtime === undefined ? undefined : mtime * 1000,
  };
}
