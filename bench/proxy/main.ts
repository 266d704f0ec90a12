// Standalone shaping proxy: node --import tsx bench/proxy/main.ts --target http://127.0.0.1:PORT
//   [--latency-ms 20] [--connection-mbps 80] [--total-mbps N] [--port 0]
// Prints {"endpoint":"http://127.0.0.1:N"} on stdout once listening; stops on SIGTERM/SIGINT.
// Rates are in MB/s (10^6 bytes); 0 means no cap.
import { parseArgs } from "node:util";
import { startShapingProxy } from "./shaping-proxy.js";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    "latency-ms": { type: "string", default: "20" },
    "connection-mbps": { type: "string", default: "80" },
    "total-mbps": { type: "string", default: "0" },
    port: { type: "string", default: "0" },
  },
});
if (!values.target) {
  process.stderr.write(
    "usage: main.ts --target http://127.0.0.1:PORT [--latency-ms 20] [--connection-mbps 80]\n",
  );
  process.exit(2);
}
const rate = (text: string) => (Number(text) > 0 ? Number(text) * 1e6 : Number.POSITIVE_INFINITY);
const proxy = await startShapingProxy({
  target: values.target,
  latencyMs: Number(values["latency-ms"]),
  perConnectionBytesPerSec: rate(values["connection-mbps"]),
  totalBytesPerSec: rate(values["total-mbps"]),
  port: Number(values.port),
});
process.stdout.write(`${JSON.stringify({ endpoint: proxy.endpoint })}\n`);
const stop = () => {
  proxy.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
