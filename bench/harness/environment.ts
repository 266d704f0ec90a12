import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { execa, type ResultPromise } from "execa";
import { S3Server } from "../../cloud/index.js";
import { nodeEntry } from "../../common/entry.js";
import { BenchError } from "../errors.js";
import type { BenchEndpoint, Profile } from "./context.js";

export interface NetworkProfile {
  // Per-request first-byte latency (ms). Issue default 20.
  latencyMs: number;
  // Cap per connection and direction (bytes/s). Issue default 80e6.
  perConnectionBytesPerSec: number;
  // Cap over all connections (bytes/s); undefined = none.
  totalBytesPerSec?: number;
}

export interface BenchEnvironment {
  endpoints: Record<Profile, BenchEndpoint>;
  s3: S3Client;
  close(): Promise<void>;
}

// One s3rver with its data on disk and one shaping proxy (its own process, so that its
// event loop never competes with the harness) in front of it.
export async function startEnvironment(options: {
  workDir: string;
  network: NetworkProfile;
  bucket?: string;
}): Promise<BenchEnvironment> {
  const bucket = options.bucket ?? "bench";
  const dataDir = join(options.workDir, "s3-data");
  await mkdir(dataDir, { recursive: true });
  const server = new S3Server({ directory: dataDir, buckets: [bucket] });
  await server.start();
  let proxy: ResultPromise | undefined;
  try {
    const { command, args } = nodeEntry("bench/proxy/main");
    const mbps = (rate: number | undefined) => (rate && Number.isFinite(rate) ? String(rate / 1e6) : "0");
    proxy = execa(
      command,
      [
        ...args,
        "--target",
        server.endpoint,
        "--latency-ms",
        String(options.network.latencyMs),
        "--connection-mbps",
        mbps(options.network.perConnectionBytesPerSec),
        "--total-mbps",
        mbps(options.network.totalBytesPerSec),
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "inherit", reject: false, buffer: false },
    );
    const proxyUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new BenchError("BENCH_TIMEOUT", "The shaping proxy did not start")),
        30_000,
      );
      proxy?.stdout?.once("data", (chunk: Buffer) => {
        clearTimeout(timer);
        try {
          resolve(
            (JSON.parse(chunk.toString().trim().split("\n")[0] ?? "") as { endpoint: string }).endpoint,
          );
        } catch (cause) {
          reject(new BenchError("BENCH_TOOL_FAILED", `The shaping proxy printed "${chunk}"`, { cause }));
        }
      });
    });
    const base = {
      directUrl: server.endpoint,
      bucket,
      region: "us-east-1",
      accessKeyId: "S3RVER",
      secretAccessKey: "S3RVER",
    };
    const s3 = new S3Client({
      endpoint: server.endpoint,
      forcePathStyle: true,
      region: base.region,
      credentials: { accessKeyId: base.accessKeyId, secretAccessKey: base.secretAccessKey },
    });
    const running = proxy;
    return {
      endpoints: {
        direct: { ...base, profile: "direct", url: server.endpoint },
        proxied: { ...base, profile: "proxied", url: proxyUrl },
      },
      s3,
      async close() {
        s3.destroy();
        if (running.pid) process.kill(running.pid, "SIGTERM");
        await running;
        await server.stop();
      },
    };
  } catch (error) {
    if (proxy?.pid) process.kill(proxy.pid, "SIGKILL");
    await proxy;
    await server.stop();
    throw error;
  }
}
