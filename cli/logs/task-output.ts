import { GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { attemptLogsPrefix, parseWorkDir, type WorkDirLocation } from "../../agent/index.js";
import { listObjects } from "../../store/index.js";

// What `snapctl logs` reads from a task's work dir in S3.
export type OutputStream = "stdout" | "stderr";

const FILES: Record<OutputStream, string> = { stdout: ".command.out", stderr: ".command.err" };

export interface FollowOptions {
  stream: OutputStream;
  // Keep reading until done() says the task has ended (then read once more). Default: one read.
  follow?: boolean;
  // Whether the task has ended (asked between reads when following). Default: its
  // .exitcode exists in the work dir.
  done?: () => Promise<boolean>;
  // Between reads when following. Default 1000 ms.
  intervalMs?: number;
  // Told when a restore rewound the file to its size at the checkpoint: what the task
  // wrote after it is written again by the restored task.
  onRewind?: (fromBytes: number, toBytes: number) => void;
  signal?: AbortSignal;
}

function key(location: WorkDirLocation, name: string): string {
  return location.prefix ? `${location.prefix}/${name}` : name;
}

// The object's size, or undefined when it does not exist (yet).
async function sizeOf(client: S3Client, bucket: string, objectKey: string, signal?: AbortSignal) {
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }), {
      abortSignal: signal,
    });
    return head.ContentLength ?? 0;
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (err as Error).name === "NotFound" || (err as Error).name === "NoSuchKey")
      return undefined;
    throw err;
  }
}

// Writes a task's output (its .command.out or .command.err in the work dir) to `write`; when
// following, what is appended as the task runs, across restores and instances (the file
// is the same object whichever instance writes it; it grows as the mount flushes it).
export async function copyTaskOutput(
  client: S3Client,
  workDir: string,
  write: (chunk: Uint8Array) => void,
  options: FollowOptions,
): Promise<void> {
  const location = parseWorkDir(workDir);
  const objectKey = key(location, FILES[options.stream]);
  const done =
    options.done ??
    (async () => (await sizeOf(client, location.bucket, key(location, ".exitcode"))) !== undefined);
  let offset = 0;
  for (let last = false; ; ) {
    let size = await sizeOf(client, location.bucket, objectKey, options.signal);
    if (size !== undefined && size < offset) {
      // A restore puts the file back to its size at the checkpoint. Seen once, a smaller
      // size may also be an overwrite still in progress (s3rver is not atomic): only a
      // size that stays smaller is a rewind.
      await sleep(Math.min(options.intervalMs ?? 1000, 500), options.signal);
      size = await sizeOf(client, location.bucket, objectKey, options.signal);
      if (size !== undefined && size < offset) {
        options.onRewind?.(offset, size);
        offset = size;
      }
    }
    if (size !== undefined && size > offset) {
      const r = await client.send(
        new GetObjectCommand({
          Bucket: location.bucket,
          Key: objectKey,
          Range: `bytes=${offset}-${size - 1}`,
        }),
        { abortSignal: options.signal },
      );
      const bytes = (await r.Body?.transformToByteArray()) ?? new Uint8Array();
      write(bytes);
      offset += bytes.length;
    }
    if (!options.follow || last || options.signal?.aborted) return;
    // One more read after the end: the last flush may land just before the end is seen.
    if (await done()) last = true;
    else await sleep(options.intervalMs ?? 1000, options.signal);
  }
}

// The agent's logs of every attempt, oldest first: [attempt name, agent.log text].
export async function agentLogs(
  client: S3Client,
  workDir: string,
  signal?: AbortSignal,
): Promise<Array<[string, string]>> {
  const location = parseWorkDir(workDir);
  const prefix = attemptLogsPrefix(location);
  const keys: string[] = [];
  for await (const o of listObjects(client, location.bucket, prefix, { signal }))
    if (o.key.endsWith("/agent.log")) keys.push(o.key);
  const logs: Array<[string, string]> = [];
  for (const k of keys.sort()) {
    const r = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: k }), {
      abortSignal: signal,
    });
    logs.push([
      k.slice(prefix.length, -"/agent.log".length),
      (await r.Body?.transformToString("utf8")) ?? "",
    ]);
  }
  return logs;
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
