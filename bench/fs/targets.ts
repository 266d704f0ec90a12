import type { FsTarget } from "./fs-target.js";
import { projectFsTarget } from "./project-fs-target.js";
import { rcloneTarget } from "./rclone-target.js";
import { s3fsTarget } from "./s3fs-target.js";
import { sdkTarget } from "./sdk-target.js";

// Every filesystem target, in the order tables show them.
export const fsTargets: readonly FsTarget[] = [projectFsTarget, s3fsTarget, rcloneTarget, sdkTarget];
