import { createServer } from "node:net";

// Asks the kernel for a free loopback TCP port. There is a window between closing the
// probe and the caller binding it, so callers that cannot bind port 0 themselves
// (redis-server) retry on EADDRINUSE.
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
