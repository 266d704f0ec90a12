// Child-process entry for the embedded S3 server (s3rver). It runs in its own process
// so that a FUSE mount or benchmark in the parent never competes with it for an event
// loop, and so that tests can kill and restart it like a real endpoint going away.
// Usage: main.js <directory> <host> <port> [bucket...]; prints {"port":N} when ready.
import S3rver from "s3rver";

const [directory, host = "127.0.0.1", portText = "0", ...buckets] = process.argv.slice(2);
if (!directory) {
  process.stderr.write("usage: main.js <directory> <host> <port> [bucket...]\n");
  process.exit(2);
}

const server = new S3rver({
  address: host,
  port: Number(portText),
  directory,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const address = (await server.run()) as { port: number };
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);

const shutdown = () => {
  const http = (server as unknown as { httpServer?: { closeAllConnections(): void } }).httpServer;
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
  http?.closeAllConnections();
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
