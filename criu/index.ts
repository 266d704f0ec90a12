export { CriuError } from "./errors.js";
export { criuLauncher, requireCriu } from "./runner/bundle.js";
export { type CriuFeatures, detectCriuFeatures } from "./runner/features.js";
export { namespaceInit, pidNamespacePrefix } from "./runner/pidns.js";
export { type CriuResult, type RunCriuOptions, runCriu } from "./runner/run-criu.js";
