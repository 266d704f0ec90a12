import { SnapError, type SnapErrorOptions } from "../common/errors.js";

// Every code the controller throws, by area. docs/compute-environment.md lists each one
// and test/controller/docs.test.ts checks that it does.
export const CONFIG_ERROR_CODES = [
  "CONFIG_INVALID",
  "CONFIG_NOT_FOUND",
  "CONFIG_UNREADABLE",
  "CONFIG_SYNTAX",
] as const;

export const REGISTRY_ERROR_CODES = [
  "REGISTRY_ILLEGAL_TRANSITION",
  "REGISTRY_STATE_CONFLICT",
  "REGISTRY_TASK_NOT_FOUND",
  "REGISTRY_TASK_EXISTS",
  "REGISTRY_STALE_FENCING_TOKEN",
  "REGISTRY_LAUNCH_NOT_NEEDED",
  "REGISTRY_INVALID_INPUT",
  "REGISTRY_UNAVAILABLE",
] as const;

export const PROVIDER_ERROR_CODES = [
  "PROVIDER_INSUFFICIENT_CAPACITY",
  "PROVIDER_NO_MATCHING_INSTANCE_TYPE",
  "PROVIDER_LAUNCH_FAILED",
  "PROVIDER_TERMINATE_FAILED",
  "PROVIDER_DESCRIBE_FAILED",
  "PROVIDER_ABORTED",
] as const;

export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];
export type RegistryErrorCode = (typeof REGISTRY_ERROR_CODES)[number];
export type ProviderErrorCode = (typeof PROVIDER_ERROR_CODES)[number];

// The controller's base error: every controller failure is one of the three below.
export class ControllerError extends SnapError {}

// A compute environment file that cannot be read or does not satisfy the schema.
// `problems` holds one line per problem: `<field.path>: <what is wrong> (got <value>)`.
export class ConfigError extends ControllerError {
  readonly problems: string[];

  constructor(
    code: ConfigErrorCode,
    message: string,
    options: SnapErrorOptions & { problems?: string[] } = {},
  ) {
    super(code, message, options);
    this.problems = options.problems ?? [];
  }
}

// A task registry operation refused by its rules (state machine, lease) or by Redis.
export class RegistryError extends ControllerError {
  constructor(code: RegistryErrorCode, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}

// A cloud (or local) provider failed to launch, describe or terminate an instance.
export class ProviderError extends ControllerError {
  constructor(code: ProviderErrorCode, message: string, options?: SnapErrorOptions) {
    super(code, message, options);
  }
}
