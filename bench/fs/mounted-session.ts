import { join } from "node:path";
import { execa } from "execa";
import { nodeEntry } from "../../common/entry.js";
import { BenchError } from "../errors.js";
import type { BenchContext, Timing } from "../harness/context.js";
import { dropCaches } from "../harness/tools.js";
import type { FsSession } from "./fs-target.js";
import type { FuseMount } from "./mount.js";
import { allVisibleAt, visibleAt } from "./s3-checks.js";

// The workloads on any FUSE mount: each runs in a child process (bench/fs/fsops) that
// timestamps itself, so process start-up is not counted; writes end when S3 has the data.
export class MountedSession implements FsSession {
  constructor(
    private readonly mount: FuseMount,
    // The directory under which a key of the bucket appears as a file.
    private readonly root: string,
    private readonly context: BenchContext,
  ) {}

  private async fsop(args: string[]): Promise<{ start: number; end: number; bytes: number }> {
    const { command, args: entryArgs } = nodeEntry("bench/fs/fsops/main");
    try {
      const result = await execa(command, [...entryArgs, ...args], {
        cancelSignal: this.context.signal,
        stdin: "ignore",
        timeout: 1_800_000,
      });
      return JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}");
    } catch (cause) {
      const stderr = (cause as { stderr?: string }).stderr ?? String(cause);
      throw new BenchError("BENCH_TOOL_FAILED", `fsops ${args.join(" ")} failed: ${stderr.slice(-400)}`, {
        cause,
      });
    }
  }

  async seqWrite(key: string, bytes: number): Promise<Timing> {
    const { start } = await this.fsop(["write", join(this.root, key), String(bytes)]);
    const end = await visibleAt(
      this.context.s3,
      this.context.endpoint.bucket,
      key,
      bytes,
      this.context.signal,
    );
    return { seconds: (end - start) / 1000, bytes };
  }

  async seqRead(key: string): Promise<Timing> {
    await dropCaches();
    const { start, end, bytes } = await this.fsop(["read", join(this.root, key)]);
    return { seconds: (end - start) / 1000, bytes };
  }

  async randomReads(key: string, fileBytes: number, count: number): Promise<Timing> {
    await dropCaches();
    const path = join(this.root, key);
    const { start, end, bytes } = await this.fsop(["randread", path, String(fileBytes), String(count), "7"]);
    return { seconds: (end - start) / 1000, bytes };
  }

  async smallWrite(prefix: string, count: number): Promise<Timing> {
    const { start, bytes } = await this.fsop(["smallwrite", join(this.root, prefix), String(count)]);
    const end = await allVisibleAt(this.context.s3, this.context.endpoint.bucket, `${prefix}/`, count);
    return { seconds: (end - start) / 1000, bytes };
  }

  async smallRead(prefix: string, count: number): Promise<Timing> {
    await dropCaches();
    const { start, end, bytes } = await this.fsop(["smallread", join(this.root, prefix), String(count)]);
    return { seconds: (end - start) / 1000, bytes };
  }

  async close(): Promise<void> {
    await this.mount.close();
  }
}
