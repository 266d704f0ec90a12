// Where a mount path points: the root, the `s3` folder, a bucket, or a key in a bucket.
export type Location =
  | { kind: "root" }
  | { kind: "s3" }
  | { kind: "bucket"; bucket: string }
  | { kind: "object"; bucket: string; key: string };

// Parses "/s3/<bucket>/<key...>"; undefined for paths outside that tree.
export function parsePath(path: string): Location | undefined {
  if (path === "/" || path === "") return { kind: "root" };
  const parts = path.split("/").filter((p) => p !== "");
  if (parts[0] !== "s3") return undefined;
  if (parts.length === 1) return { kind: "s3" };
  const bucket = parts[1] as string;
  if (parts.length === 2) return { kind: "bucket", bucket };
  return { kind: "object", bucket, key: parts.slice(2).join("/") };
}

// The mount path of a key.
export function pathOf(bucket: string, key: string): string {
  return key ? `/s3/${bucket}/${key}` : `/s3/${bucket}`;
}

// The listing prefix of a directory location ("" for a bucket root, "a/b/" for a key).
export function dirPrefix(key: string): string {
  return key === "" ? "" : `${key}/`;
}

// The parent directory key and the name of a key.
export function splitKey(key: string): { parent: string; name: string } {
  const i = key.lastIndexOf("/");
  return i < 0 ? { parent: "", name: key } : { parent: key.slice(0, i), name: key.slice(i + 1) };
}
