import { readFile } from "node:fs/promises";
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";

// Where a path on the Fusion mount lives in S3, or undefined when it is not on the mount.
export function s3Location(mountpoint: string, path: string): { bucket: string; key: string } | undefined {
  const prefix = `${mountpoint}/s3/`;
  if (!path.startsWith(prefix)) return undefined;
  const rest = path.slice(prefix.length);
  const slash = rest.indexOf("/");
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

// Reads a small file of the task. Files on our own mount are read from S3 (a FUSE server
// must not read its own mount with blocking calls); others from the local disk.
export async function readTaskFile(
  ctx: { client: S3Client; mountpoint: string },
  path: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const loc = s3Location(ctx.mountpoint, path);
  try {
    if (!loc) return await readFile(path, "utf8");
    const r = await ctx.client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.key }), {
      abortSignal: signal,
    });
    return (await r.Body?.transformToString("utf8")) ?? "";
  } catch (err) {
    const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
    if (e.code === "ENOENT" || e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404)
      return undefined;
    throw err;
  }
}

// Removes a file through the mount (a child process, so the mount's own view stays right).
export async function removeTaskFile(
  ctx: { client: S3Client; mountpoint: string },
  path: string,
  signal?: AbortSignal,
): Promise<void> {
  await execa("rm", ["-f", path], { cancelSignal: signal });
  const loc = s3Location(ctx.mountpoint, path);
  if (loc) {
    await ctx.client.send(new DeleteObjectCommand({ Bucket: loc.bucket, Key: loc.key }), {
      abortSignal: signal,
    });
  }
}

// Runs a shell command line in a child process (for everything that touches the mount).
export async function sh(script: string, args: string[] = [], signal?: AbortSignal): Promise<string> {
  const r = await execa("sh", ["-c", script, "sh", ...args], { cancelSignal: signal });
  return String(r.stdout);
}
