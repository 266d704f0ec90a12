import { createSnapshotStore, SnapshotEngine, snapshotMountAreas } from "../../criu/index.js";
import type { ChunkStore } from "../../store/index.js";
import type { EngineBinding, EngineContext } from "./engine-binding.js";

export interface CriuBindingOptions {
  // zstd level of snapshot chunks. Default: the store's (3).
  compressionLevel?: number;
  tcpMode?: "close" | "established";
  // Local scratch directory of the engine. Default: the engine's.
  scratchDir?: string;
}

// The production binding: criu/'s SnapshotEngine, its chunk store behind the mount's
// snapshot area (one store instance serves both, as the engine requires).
export function criuEngineBinding(options: CriuBindingOptions = {}): EngineBinding {
  let store: ChunkStore | undefined;
  const storeFor = (context: EngineContext): ChunkStore => {
    store ??= createSnapshotStore({
      client: context.client,
      bucket: context.workDir.bucket,
      workPrefix: context.workDir.prefix,
      ...(options.compressionLevel === undefined ? {} : { compressionLevel: options.compressionLevel }),
      logger: context.logger,
    });
    return store;
  };
  return {
    mountOptions: (context) => ({
      chunkedAreas: snapshotMountAreas({ store: storeFor(context), workPrefix: context.workDir.prefix }),
    }),
    create: (context) =>
      new SnapshotEngine({
        mount: context.mount,
        client: context.client,
        bucket: context.workDir.bucket,
        workPrefix: context.workDir.prefix,
        taskId: context.taskId,
        store: storeFor(context),
        keepGenerations: context.keepGenerations,
        ...(options.tcpMode ? { tcpMode: options.tcpMode } : {}),
        ...(options.scratchDir ? { workDir: options.scratchDir } : {}),
        logger: context.logger,
      }),
    close: async () => {
      await store?.close();
    },
  };
}
