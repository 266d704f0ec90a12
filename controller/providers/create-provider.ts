import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Logger } from "../../common/log.js";
import type { ComputeEnvironment } from "../config/schema.js";
import { ProviderError } from "../errors.js";
import { Ec2Provider } from "./ec2-provider.js";
import { LocalProvider, type LocalProviderConfig } from "./local-provider.js";
import type { Provider } from "./provider.js";

export interface CreateProviderOptions {
  // Required for "ec2" environments.
  ec2Client?: EC2Client;
  // For "local" environments: where instances live and how agents start (baseDir required,
  // here or in the environment's `local.baseDir`).
  local?: Partial<LocalProviderConfig>;
  logger?: Logger;
}

// The provider a compute environment names.
export function createProvider(
  environment: ComputeEnvironment,
  options: CreateProviderOptions = {},
): Provider {
  if (environment.provider === "ec2") {
    if (!options.ec2Client) {
      throw new ProviderError(
        "PROVIDER_LAUNCH_FAILED",
        `Compute environment "${environment.name}" uses EC2 but no EC2 client was given`,
      );
    }
    return new Ec2Provider({ client: options.ec2Client, environment, logger: options.logger });
  }
  // Local instances live in the caller's process: it passes where and how to start them.
  const local = options.local ?? {};
  const baseDir = local.baseDir ?? environment.local.baseDir;
  if (!baseDir) {
    throw new ProviderError(
      "PROVIDER_LAUNCH_FAILED",
      `Compute environment "${environment.name}" uses the local provider but no base directory was given`,
    );
  }
  return new LocalProvider({
    zones: environment.local.zones,
    arch: environment.local.arch,
    instanceType: environment.instanceTypes[0],
    logger: options.logger,
    ...local,
    baseDir,
  });
}
