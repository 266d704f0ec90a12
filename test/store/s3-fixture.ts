// A real s3rver in a temporary directory and an S3 client for it, for store tests.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { S3Server } from "../../cloud/index.js";
import { ChunkStore, type ChunkStoreOptions } from "../../store/index.js";

export interface S3Fixture {
  server: S3Server;
  client: S3Client;
  bucket: string;
  directory: string;
  close(): Promise<void>;
}

export async function startS3(bucket = "snapshots"): Promise<S3Fixture> {
  const directory = await mkdtemp(join(tmpdir(), "store-test-"));
  const server = new S3Server({ directory: join(directory, "s3"), buckets: [bucket] });
  await server.start();
  const client = new S3Client({
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  });
  return {
    server,
    client,
    bucket,
    directory,
    async close() {
      client.destroy();
      await server.stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

// A chunk store on the fixture's bucket laid out like the snapshot engine's (64 KiB chunks in
// packs; 1 MiB packs keep the tests small), under `prefix`.
export function packedStore(
  s3: S3Fixture,
  prefix: string,
  options: Partial<ChunkStoreOptions> = {},
): ChunkStore {
  return new ChunkStore({
    client: s3.client,
    bucket: s3.bucket,
    prefix,
    chunkSize: 64 * 1024,
    packSize: 1024 * 1024,
    ...options,
  });
}
