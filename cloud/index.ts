export { startLocalCloudDaemon, stopLocalCloudDaemon } from "./daemon-control.js";
export { type DaemonState, readDaemonState } from "./daemon-state.js";
export { CLOUD_ERROR_CODES, CloudError, type CloudErrorCode } from "./errors.js";
export { ImdsEmulator, type InterruptionAction, type ScheduleOptions } from "./imds/emulator.js";
export {
  LocalCloud,
  type LocalCloudEndpoints,
  type LocalCloudOptions,
  localCloudEnv,
} from "./local-cloud.js";
export { RedisServer } from "./redis/server.js";
export { S3Server } from "./s3/server.js";
