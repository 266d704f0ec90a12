// A Fusion mount in its own process, driven by a test: options as JSON in argv[2]; prints
// {"mounted":path} when ready; answers JSON-line requests on stdin (commit, present, stats);
// unmounts on SIGTERM/SIGINT. Tests must not access a FUSE mount from the process serving it.
import { createInterface } from "node:readline";
import { createLogger } from "../../../common/log.js";
import { type FusionOptions, mountFusion } from "../../../driver/index.js";
import { MapChunkStore } from "./map-chunk-store.js";

interface ChildOptions extends Omit<FusionOptions, "chunkedAreas" | "logger"> {
  mapChunkAreas?: Array<{ bucket: string; prefix: string }>;
}

const options = JSON.parse(process.argv[2] ?? "{}") as ChildOptions;
const store = new MapChunkStore();
const logger = createLogger("fusion-test", process.env.FUSION_LOG_LEVEL ?? "warn");
const mount = await mountFusion({
  ...options,
  chunkedAreas: (options.mapChunkAreas ?? []).map((a) => ({ ...a, store })),
  logger,
});
process.stdout.write(`${JSON.stringify({ mounted: mount.mountpoint })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  mount.close().then(
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
        return [...store.chunks.keys()];
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
