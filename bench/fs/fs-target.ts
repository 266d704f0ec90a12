import type { BenchContext, Timing } from "../harness/context.js";

// A way to use S3 as files: a FUSE mount (s3fs, rclone, this project) or the SDK itself.
// Adding a target is one object implementing this and one line in fs/targets.ts.
export interface FsTarget {
  // Short stable name used in results ("s3fs").
  readonly name: string;
  // The settings it runs with, printed in BENCHMARKS.md.
  readonly settings: string;
  // Why it cannot run on this machine, or undefined when it can.
  unavailable(): Promise<string | undefined>;
  // A fresh session (a new mount: no cache carried over between runs).
  open(context: BenchContext): Promise<FsSession>;
}

// The five filesystem workloads. Writes complete when the data is visible in S3.
export interface FsSession {
  seqWrite(key: string, bytes: number): Promise<Timing>;
  seqRead(key: string): Promise<Timing>;
  randomReads(key: string, fileBytes: number, count: number): Promise<Timing>;
  smallWrite(prefix: string, count: number): Promise<Timing>;
  smallRead(prefix: string, count: number): Promise<Timing>;
  close(): Promise<void>;
}
