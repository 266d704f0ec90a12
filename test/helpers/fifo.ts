import { closeSync, constants, openSync } from "node:fs";
import { Socket } from "node:net";
import { createInterface } from "node:readline";
import { execa } from "execa";

export interface FifoPipe {
  path: string;
  // Write end, to hand to a child process as a file descriptor.
  writeFd: number;
  // Lines read from the read end.
  lines: string[];
  // Resolves once `predicate` holds for the lines read so far.
  waitFor(predicate: (lines: string[]) => boolean, timeoutMs?: number): Promise<void>;
  closeWriteEnd(): Promise<void>;
  close(): Promise<void>;
}

// A named pipe whose lines are collected: Node cannot make anonymous pipes (its child
// stdio pipes are socketpairs, which CRIU treats as external sockets), and CRIU dumps a
// FIFO by path, so a restore can hand a new one in with --inherit-fd.
export async function openFifo(path: string): Promise<FifoPipe> {
  await execa("mkfifo", [path]);
  // Raw descriptors (not FileHandles, which close themselves on GC under the socket).
  // Neither open blocks: the read end is non-blocking, and then the write end has a reader.
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let writeFd: number | undefined = openSync(path, constants.O_WRONLY);
  const closeWriter = () => {
    if (writeFd !== undefined) closeSync(writeFd);
    writeFd = undefined;
  };
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  // libuv reads a non-blocking FIFO as a pipe stream, off the threadpool.
  const stream = new Socket({ fd: readFd, readable: true, writable: false });
  stream.on("error", () => {});
  createInterface({ input: stream }).on("line", (line) => {
    lines.push(line);
    for (const w of waiters) w();
  });
  return {
    path,
    get writeFd() {
      if (writeFd === undefined) throw new Error(`write end of ${path} is closed`);
      return writeFd;
    },
    lines,
    async waitFor(predicate, timeoutMs = 15_000) {
      if (predicate(lines)) return;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting on ${path}; lines so far: ${lines.slice(-5).join(",")}`));
        }, timeoutMs);
        const check = () => {
          if (predicate(lines)) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    },
    async closeWriteEnd() {
      closeWriter();
    },
    async close() {
      closeWriter();
      stream.destroy();
    },
  };
}
