export { type CreateProviderOptions, createProvider } from "./create-provider.js";
export {
  ATTEMPT_TAG,
  Ec2Provider,
  type Ec2ProviderOptions,
  ENVIRONMENT_TAG,
  TASK_TAG,
} from "./ec2-provider.js";
export { instanceArch } from "./instance-arch.js";
export {
  type LocalInstance,
  type LocalInstanceExit,
  LocalProvider,
  type LocalProviderConfig,
} from "./local-provider.js";
export type { LocalProviderOptions } from "./local-provider-options.js";
export type {
  InstanceDescription,
  InstanceState,
  LaunchedInstance,
  LaunchRequest,
  Provider,
  ProviderCallOptions,
} from "./provider.js";
export {
  type AgentCommandOptions,
  agentCommand,
  shellQuote,
  type UserDataOptions,
  userDataScript,
} from "./user-data.js";
