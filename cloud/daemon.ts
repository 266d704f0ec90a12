// Child-process entry behind `snapctl local up`: runs the local cloud until SIGTERM or
// SIGINT, with its state recorded in $SNAPCTL_HOME/local-cloud.json while it runs.
// Usage: daemon.js <home> <logFile>
import { mkdir } from "node:fs/promises";
import { daemonDirectory, removeDaemonState, writeDaemonState } from "./daemon-state.js";
import { LocalCloud } from "./local-cloud.js";

const [home, logFile = ""] = process.argv.slice(2);
if (!home) {
  process.stderr.write("usage: daemon.js <home> <logFile>\n");
  process.exit(2);
}
const directory = daemonDirectory(home);
await mkdir(directory, { recursive: true });
const cloud = await LocalCloud.start({ directory });
await writeDaemonState(
  { pid: process.pid, startedAt: new Date().toISOString(), endpoints: cloud.endpoints, logFile },
  home,
);
process.stdout.write(`${JSON.stringify(cloud.endpoints)}\n`);

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`local cloud: ${signal}, stopping\n`);
  try {
    await cloud.close();
  } finally {
    await removeDaemonState(home);
    process.exit(0);
  }
};
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
