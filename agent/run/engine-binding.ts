import type { S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "../../common/log.js";
import type { SnapshotEngineLike } from "../../criu/index.js";
import type { FusionMount, FusionOptions } from "../../driver/index.js";
import type { WorkDirLocation } from "./work-dir.js";

// What the agent knows when it sets up the snapshot engine.
export interface EngineContext {
  taskId: string;
  workDir: WorkDirLocation;
  client: S3Client;
  keepGenerations: number;
  logger: Logger;
}

// How the agent gets its snapshot engine: the engine decides the mount options it needs
// (chunked areas for its images) before the mount exists, then is built on the mount.
// The default binding (criu-binding.ts) uses criu/'s SnapshotEngine; tests may bind a
// differently configured engine.
export interface EngineBinding {
  mountOptions?(context: EngineContext): Partial<FusionOptions>;
  create(context: EngineContext & { mount: FusionMount }): SnapshotEngineLike | Promise<SnapshotEngineLike>;
  // Frees what the binding holds (its chunk store) after the mount is closed.
  close?(): Promise<void>;
}
