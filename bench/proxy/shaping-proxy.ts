import { createConnection, createServer, type Socket } from "node:net";
import { BenchError } from "../errors.js";
import { ShapedPipe } from "./shaped-pipe.js";
import { TokenBucket } from "./token-bucket.js";

export interface ShapingProxyOptions {
  // The endpoint to forward to, e.g. "http://127.0.0.1:9000" (only host and port are used).
  target: string;
  // Added to every request before it reaches the target (ms). Default 20.
  latencyMs?: number;
  // Cap per connection and per direction (bytes/s). Default 80e6; Infinity for none.
  perConnectionBytesPerSec?: number;
  // Cap over all connections, per direction (bytes/s). Default none.
  totalBytesPerSec?: number;
  // Loopback address and port to listen on. Defaults 127.0.0.1 and 0 (any free port).
  host?: string;
  port?: number;
  // Closes the proxy when aborted.
  signal?: AbortSignal;
}

export interface ShapingProxy {
  // "http://127.0.0.1:<port>": use it in place of the target endpoint.
  readonly endpoint: string;
  // Bytes forwarded so far, client->server and server->client.
  stats(): { connections: number; bytesUp: number; bytesDown: number };
  // Stops listening and cuts every open connection; idempotent.
  close(): Promise<void>;
}

// A TCP proxy that makes loopback S3 behave like a network: a one-way delay on the
// client->server direction (so every request, including each one on a keep-alive
// connection, waits latencyMs before the server sees it and therefore before its first
// response byte) and token-bucket bandwidth caps per connection and in total, in both
// directions. The approximation: latency is charged once per request on the way up, not
// split across both directions, and TCP handshakes are not delayed.
export async function startShapingProxy(options: ShapingProxyOptions): Promise<ShapingProxy> {
  const target = parseTarget(options.target);
  const latencyMs = options.latencyMs ?? 20;
  const perConnection = options.perConnectionBytesPerSec ?? 80e6;
  const totalUp = new TokenBucket(options.totalBytesPerSec ?? Number.POSITIVE_INFINITY);
  const totalDown = new TokenBucket(options.totalBytesPerSec ?? Number.POSITIVE_INFINITY);
  const sockets = new Set<Socket>();
  const live = new Set<{ up: ShapedPipe; down: ShapedPipe }>();
  let connections = 0;
  let bytesUp = 0;
  let bytesDown = 0;

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    connections++;
    const upstream = createConnection({
      host: target.host,
      port: target.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    sockets.add(client);
    sockets.add(upstream);
    const up = new ShapedPipe(client, upstream, {
      delayMs: latencyMs,
      buckets: [new TokenBucket(perConnection), totalUp],
    });
    const down = new ShapedPipe(upstream, client, { buckets: [new TokenBucket(perConnection), totalDown] });
    const pair = { up, down };
    live.add(pair);
    const teardown = () => {
      if (!live.delete(pair)) return;
      bytesUp += up.bytes;
      bytesDown += down.bytes;
      up.dispose();
      down.dispose();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // An error, or a side closing without a clean end, cuts the pair at once. A side that
    // ended cleanly may close while its last bytes still wait in the shaper: those are
    // delivered, and the pair is released once both sides are closed.
    client.on("error", teardown);
    upstream.on("error", teardown);
    client.on("close", () => {
      if (!up.sourceEnded || upstream.closed) teardown();
    });
    upstream.on("close", () => {
      if (!down.sourceEnded || client.closed) teardown();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", (cause) =>
      reject(
        new BenchError("BENCH_PROXY_TARGET", `Cannot listen for the shaping proxy: ${cause}`, { cause }),
      ),
    );
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
    return closing;
  };
  const onAbort = () => {
    close().catch(() => {});
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  return {
    endpoint: `http://${options.host ?? "127.0.0.1"}:${port}`,
    stats: () => {
      let up = bytesUp;
      let down = bytesDown;
      for (const pair of live) {
        up += pair.up.bytes;
        down += pair.down.bytes;
      }
      return { connections, bytesUp: up, bytesDown: down };
    },
    close,
  };
}

function parseTarget(target: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(target.includes("://") ? target : `http://${target}`);
  } catch (cause) {
    throw new BenchError("BENCH_PROXY_TARGET", `Proxy target "${target}" is not a URL or host:port`, {
      cause,
    });
  }
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  if (!["127.0.0.1", "localhost", "[::1]", "::1"].includes(url.hostname)) {
    // Benchmarks only ever talk to loopback.
    throw new BenchError("BENCH_PROXY_TARGET", `Proxy target "${target}" is not on loopback`);
  }
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port };
}
