// A Fusion mount in its own process, driven by a test: options as JSON in argv[2]; prints
// {"mounted":path} when ready; answers JSON-line requests on stdin (commit, present, stats);
// unmounts on SIGTERM/SIGINT. Tests must not access a FUSE mount from the process serving it.
import { createInterface } from "node:readline";
import { S3Client } from "@aws-sdk/client-s3";
import { createLogger } from "../../../common/log.js";
import { type FusionOptions, mountFusion } from "../../../driver/index.js";
import { ChunkStore } from "../../../store/index.js";
import type { ChunkStoreLike } from "../../../store/types.js";
import { MapChunkStore } from "./map-chunk-store.js";

interface ChildOptions extends Omit<FusionOptions, "chunkedAreas" | "logger"> {
  chunkAreas?: Array<{ bucket: string; prefix: string }>;
  // "map": the in-test stand-in; "real": store/'s ChunkStore on the same S3 endpoint.
  chunkStore?: "map" | "real";
  logLevel?: string;
}

const options = JSON.parse(process.argv[2] ?? "{}") as ChildOptions;
const { chunkAreas, chunkStore: kind, logLevel, ...fusionOptions } = options;
const mapStore = new MapChunkStore();
let realStore: ChunkStore | undefined;
let storeClient: S3Client | undefined;
const storeFor = (bucket: string): ChunkStoreLike => {
  if (kind !== "real") return mapStore;
  storeClient ??= new S3Client({ forcePathStyle: true });
  realStore ??= new ChunkStore({ client: storeClient, bucket, prefix: "chunks/" });
  return realStore;
};
const logger = createLogger("fusion-test", process.env.FUSION_LOG_LEVEL ?? logLevel ?? "warn");
const mount = await mountFusion({
  ...fusionOptions,
  chunkedAreas: (chunkAreas ?? []).map((a) => ({ ...a, store: storeFor(a.bucket) })),
  logger,
});
process.stdout.write(`${JSON.stringify({ mounted: mount.mountpoint })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  mount
    .close()
    .then(async () => {
      await realStore?.close();
      storeClient?.destroy();
    })
    .then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "close failed");
        process.exit(1);
      },
    );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const request = JSON.parse(line) as { id: number; op: string; [k: string]: unknown };
  const answer = (body: object) => process.stdout.write(`${JSON.stringify({ id: request.id, ...body })}\n`);
  const work = async () => {
    switch (request.op) {
      case "commit":
        return await mount.commit({ paths: request.paths as string[] | undefined });
      case "present":
        return await mount.presentChunkedFiles(
          request.input as Parameters<typeof mount.presentChunkedFiles>[0],
        );
      case "chunks":
        return [...mapStore.chunks.keys()];
      default:
        throw new Error(`unknown op ${request.op}`);
    }
  };
  work().then(
    (result) => answer({ result: result ?? null }),
    (err: unknown) =>
      answer({ error: { message: (err as Error).message, code: (err as { code?: string }).code } }),
  );
});
lines.on("close", stop);
