import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { Agent, createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startShapingProxy } from "../../bench/proxy/index.js";
import { S3Server } from "../../cloud/index.js";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

// Sends `payload` through the proxy to an echo server and returns what comes back.
async function echoThrough(endpoint: string, payload: Buffer): Promise<Buffer> {
  const url = new URL(endpoint);
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
    socket.end(payload);
  });
}

describe("shaping proxy", () => {
  let echo: Server;
  let echoPort: number;
  beforeAll(async () => {
    echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
    echoPort = await listen(echo);
  });
  afterAll(async () => {
    await new Promise((resolve) => echo.close(resolve));
  });

  it("passes bytes through unchanged in both directions", async () => {
    const proxy = await startShapingProxy({ target: `http://127.0.0.1:${echoPort}`, latencyMs: 1 });
    try {
      const payload = randomBytes(8 * 1024 * 1024 + 17);
      const back = await echoThrough(proxy.endpoint, payload);
      expect(back.length).toBe(payload.length);
      expect(sha(back)).toBe(sha(payload));
      const stats = proxy.stats();
      expect(stats.bytesUp).toBe(payload.length);
      expect(stats.bytesDown).toBe(payload.length);
    } finally {
      await proxy.close();
    }
  });

  it("delays every request on a keep-alive connection by at least the latency", async () => {
    const http = createHttpServer((_req, res) => res.end("ok"));
    const port = await listen(http);
    const latencyMs = 40;
    const proxy = await startShapingProxy({ target: `http://127.0.0.1:${port}`, latencyMs });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const elapsed: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const body = await new Promise<string>((resolve, reject) => {
          const req = httpRequest(`${proxy.endpoint}/x`, { agent }, (res) => {
            let text = "";
            res.on("data", (chunk) => {
              text += chunk;
            });
            res.on("end", () => resolve(text));
          });
          req.on("error", reject);
          req.end();
        });
        elapsed.push(performance.now() - started);
        expect(body).toBe("ok");
      }
      // One connection served all three requests, so the delay is per request, not per connection.
      expect(proxy.stats().connections).toBe(1);
      for (const ms of elapsed) expect(ms).toBeGreaterThanOrEqual(latencyMs - 1);
    } finally {
      agent.destroy();
      await proxy.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it("caps the bandwidth of a connection", async () => {
    const rate = 10e6;
    const proxy = await startShapingProxy({
      target: `http://127.0.0.1:${echoPort}`,
      latencyMs: 0,
      perConnectionBytesPerSec: rate,
    });
    try {
      const payload = randomBytes(3_000_000);
      const started = performance.now();
      await echoThrough(proxy.endpoint, payload);
      const seconds = (performance.now() - started) / 1000;
      // 3 MB at 10 MB/s cannot arrive in less than ~0.3 s (minus the 5 ms burst allowance).
      expect(seconds).toBeGreaterThanOrEqual(0.29);
    } finally {
      await proxy.close();
    }
  });

  it("rejects a target that is not on loopback", async () => {
    await expect(startShapingProxy({ target: "http://example.com:80" })).rejects.toMatchObject({
      code: "BENCH_PROXY_TARGET",
    });
  });

  it("closes open connections on abort", async () => {
    const controller = new AbortController();
    const proxy = await startShapingProxy({
      target: `http://127.0.0.1:${echoPort}`,
      signal: controller.signal,
    });
    const url = new URL(proxy.endpoint);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once("connect", resolve));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    controller.abort();
    await closed;
    await proxy.close();
    expect(socket.destroyed).toBe(true);
  });
});

describe("shaping proxy in front of S3", () => {
  let directory: string;
  let s3: S3Server;
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), "bench-proxy-s3-"));
    s3 = new S3Server({ directory, buckets: ["bench-proxy"] });
    await s3.start();
  });
  afterAll(async () => {
    await s3.stop();
    await rm(directory, { recursive: true, force: true });
  });

  it("carries a multipart upload and a download through the SDK unchanged", async () => {
    const proxy = await startShapingProxy({
      target: s3.endpoint,
      latencyMs: 5,
      perConnectionBytesPerSec: 200e6,
    });
    const client = new S3Client({
      endpoint: proxy.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    try {
      const body = randomBytes(21 * 1024 * 1024);
      await new Upload({
        client,
        params: { Bucket: "bench-proxy", Key: "big", Body: body },
        partSize: 5 * 1024 * 1024,
        queueSize: 3,
      }).done();
      const got = await client.send(new GetObjectCommand({ Bucket: "bench-proxy", Key: "big" }));
      const back = Buffer.from((await got.Body?.transformToByteArray()) ?? []);
      expect(sha(back)).toBe(sha(body));
      expect(proxy.stats().bytesUp).toBeGreaterThan(body.length);
    } finally {
      client.destroy();
      await proxy.close();
    }
  });
});
