import type { S3Client } from "@aws-sdk/client-s3";

// Where a target talks to S3 in one profile.
export interface BenchEndpoint {
  // "direct": loopback s3rver as is; "proxied": through the shaping proxy.
  profile: Profile;
  // The endpoint the target under test must use.
  url: string;
  // The unshaped endpoint, for the harness's own setup and checks.
  directUrl: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export type Profile = "direct" | "proxied";

// What a target needs to run one workload.
export interface BenchContext {
  endpoint: BenchEndpoint;
  // A private scratch directory for this target (mount points, caches, images).
  workDir: string;
  // An S3 client on the direct endpoint for setup and durability checks (never timed).
  s3: S3Client;
  signal: AbortSignal;
  log: (message: string) => void;
}

// The outcome of one timed operation.
export interface Timing {
  seconds: number;
  bytes: number;
}
