import { CopyObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { FusionMount } from "../../driver/index.js";
import type { OpenFileState } from "../../store/index.js";
import { CriuError } from "../errors.js";
import { sh } from "./task-files.js";

export interface OpenFilesContext {
  mount: FusionMount;
  client: S3Client;
  signal?: AbortSignal;
}

// Commits the given files (open for writing by the frozen task) through the driver and
// takes a server-side copy of each, so the exact bytes at the freeze survive whatever the
// task (or anyone) writes later. Called while the task is stopped.
export async function captureOpenFiles(
  ctx: OpenFilesContext,
  paths: string[],
  copyKey: (index: number) => string,
): Promise<OpenFileState[]> {
  if (paths.length === 0) return [];
  const committed = await ctx.mount.commit({ paths, signal: ctx.signal });
  const out: OpenFileState[] = [];
  for (const [i, file] of committed.entries()) {
    const path = paths[i] as string;
    if (file.chunks) continue;
    const snapshotKey = copyKey(i);
    try {
      await ctx.client.send(
        new CopyObjectCommand({
          Bucket: file.bucket,
          Key: snapshotKey,
          CopySource: `${file.bucket}/${encodeURIComponent(file.key).replaceAll("%2F", "/")}`,
        }),
        { abortSignal: ctx.signal },
      );
    } catch (err) {
      throw new CriuError(
        "CRIU_OPEN_FILE_CAPTURE_FAILED",
        `Cannot copy open file ${path} (s3://${file.bucket}/${file.key}) into the snapshot: ${(err as Error).message}`,
        { cause: err, retryable: true },
      );
    }
    out.push({ path, bucket: file.bucket, key: file.key, size: file.size, etag: file.etag, snapshotKey });
  }
  return out;
}

// Puts every open file back to its state at the freeze (before criu restore, which refuses
// a file whose size changed): a server-side copy back from the snapshot, then a check
// through the mount that the task will see the recorded size.
export async function restoreOpenFiles(ctx: OpenFilesContext, files: OpenFileState[]): Promise<void> {
  for (const f of files) {
    if (f.snapshotKey) {
      try {
        await ctx.client.send(
          new CopyObjectCommand({
            Bucket: f.bucket,
            Key: f.key,
            CopySource: `${f.bucket}/${encodeURIComponent(f.snapshotKey).replaceAll("%2F", "/")}`,
          }),
          { abortSignal: ctx.signal },
        );
      } catch (err) {
        throw new CriuError(
          "CRIU_OPEN_FILE_RESTORE_FAILED",
          `Cannot put back open file ${f.path} from s3://${f.bucket}/${f.snapshotKey}: ${(err as Error).message}`,
          { cause: err, retryable: true },
        );
      }
    }
    await waitForSize(f.path, f.size, ctx.mount.options.statTtlMs + 2_000, ctx.signal);
  }
}

// Waits until the mount shows `path` with `size` bytes (its stat cache may hold an older
// answer for up to statTtlMs). Through a child process: never our own mount from here.
async function waitForSize(
  path: string,
  size: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = "";
  for (;;) {
    seen = (await sh('stat -c %s "$1" 2>/dev/null || echo missing', [path], signal)).trim();
    if (seen === String(size)) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new CriuError(
    "CRIU_OPEN_FILE_RESTORE_FAILED",
    `Open file ${path} should be ${size} bytes for the restore but the mount shows ${seen}`,
  );
}
