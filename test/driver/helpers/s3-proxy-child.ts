// Runs an S3ProxyServer in its own process: upstream endpoint in argv[2]; prints {"port"} when
// listening, then {"record"} for each answered request; a line "<n>" on stdin is answered with
// {"synced":n} after every earlier record; a line {"sync":n,"behaviour":{...}} applies
// S3ProxyServer.configure first. Exits on SIGTERM or when stdin closes.
import { createInterface } from "node:readline";
import { type ProxyBehaviour, S3ProxyServer } from "./s3-proxy.js";

const out = (msg: object) => process.stdout.write(`${JSON.stringify(msg)}\n`);
const server = new S3ProxyServer(process.argv[2] ?? "", (record) => out({ record }));
out({ port: await server.start() });
const stop = () => {
  server.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.startsWith("{")) return out({ synced: Number(line) });
  const msg = JSON.parse(line) as { sync: number; behaviour: ProxyBehaviour };
  server.configure(msg.behaviour);
  out({ synced: msg.sync });
});
lines.on("close", stop);
