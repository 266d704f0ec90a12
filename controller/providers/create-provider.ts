import type { EC2Client } from "@aws-sdk/client-ec2";
import type { Logger } from "../../common/log.js";
import type { ComputeEnvironment } from "../config/schema.js";
import { ProviderError } from "../errors.js";
import { Ec2Provider } from "./ec2-provider.js";
import type { Provider } from "./provider.js";

export interface CreateProviderOptions {
  // Required for "ec2" environments.
  ec2Client?: EC2Client;
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
  throw new ProviderError(
    "PROVIDER_NOT_IMPLEMENTED",
    `Compute environment "${environment.name}" uses the local provider, which is not implemented yet (it needs the agent)`,
  );
}
