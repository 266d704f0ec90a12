import type { ConnectionOptions } from "bullmq";

// BullMQ connection options for a redis:// URL (the queues themselves, their names and
// messages are in protocol/). Workers need maxRetriesPerRequest null (they block on
// Redis); producers get the same so a Redis restart only delays them.
export function bullConnection(url: string): ConnectionOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined,
    maxRetriesPerRequest: null,
  };
}
