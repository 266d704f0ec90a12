// The controller's public API: compute environment configuration, the task registry
// (state machine, events, restore leases), the instance providers, and the recovery
// decision for an interrupted task, and the service that follows every task.
export * from "./config/index.js";
export {
  CONFIG_ERROR_CODES,
  ConfigError,
  ControllerError,
  PROVIDER_ERROR_CODES,
  ProviderError,
  REGISTRY_ERROR_CODES,
  RegistryError,
} from "./errors.js";
export * from "./providers/index.js";
export * from "./recovery/index.js";
export * from "./registry/index.js";
export * from "./service/index.js";
