export {
  createSnapshotStore,
  imagesKeyPrefix,
  SNAPSHOT_CHUNK_SIZE,
  SNAPSHOT_PACK_SIZE,
  type SnapshotLayout,
  type SnapshotStoreOptions,
  snapshotLayout,
  snapshotMountAreas,
} from "./engine/layout.js";
export { SnapshotEngine, type SnapshotEngineOptions } from "./engine/snapshot-engine.js";
export type * from "./engine/types.js";
export { CRIU_ERROR_CODES, CriuError, type CriuErrorCode, criuLogOf } from "./errors.js";
export { criuLauncher, requireCriu } from "./runner/bundle.js";
export { type CriuFeatures, detectCriuFeatures } from "./runner/features.js";
export { namespaceInit, pidNamespacePrefix } from "./runner/pidns.js";
export { type CriuResult, type RunCriuOptions, runCriu } from "./runner/run-criu.js";
