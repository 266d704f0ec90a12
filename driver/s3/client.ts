import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client } from "@aws-sdk/client-s3";

export interface S3ClientOverrides {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  // Sockets kept per host: at least the driver's GET and upload concurrency.
  maxSockets?: number;
}

// Builds the client from the standard AWS chain (AWS_ENDPOINT_URL_S3, AWS_REGION, credentials,
// profiles), with explicit overrides. The driver retries by itself (bounded, with jitter), so
// the SDK makes one attempt; checksums are computed only where S3 requires them, because on
// this path every byte would otherwise be hashed on the event loop.
export function createS3Client(overrides: S3ClientOverrides = {}): S3Client {
  const forcePathStyle =
    overrides.forcePathStyle ?? (process.env.SNAPCTL_S3_FORCE_PATH_STYLE === "1" ? true : undefined);
  const maxSockets = overrides.maxSockets ?? 64;
  return new S3Client({
    ...(overrides.endpoint ? { endpoint: overrides.endpoint } : {}),
    ...(overrides.region ? { region: overrides.region } : {}),
    ...(forcePathStyle !== undefined ? { forcePathStyle } : {}),
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: {
      connectionTimeout: 10_000,
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
    },
  });
}
