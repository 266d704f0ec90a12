import { createHash } from "node:crypto";
import {
  DescribeInstancesCommand,
  type DescribeInstancesCommandOutput,
  DescribeSubnetsCommand,
  type EC2Client,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  type Tag,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { type Logger, silentLogger } from "../../common/log.js";
import type { Ec2ComputeEnvironment } from "../config/schema.js";
import { ProviderError } from "../errors.js";
import type { Arch } from "../registry/task-record.js";
import { ec2ErrorCode, isAbort, isCapacityError, providerError } from "./ec2-errors.js";
import { instanceArch } from "./instance-arch.js";
import type {
  InstanceDescription,
  InstanceState,
  LaunchedInstance,
  LaunchRequest,
  Provider,
  ProviderCallOptions,
} from "./provider.js";
import { userDataScript } from "./user-data.js";

export interface Ec2ProviderOptions {
  // The EC2 client, configured by the caller (region, credentials).
  client: EC2Client;
  environment: Ec2ComputeEnvironment;
  // Architecture of an instance type. Default: instanceArch() (from the type's name).
  archOf?: (instanceType: string) => Arch;
  logger?: Logger;
}

interface Candidate {
  instanceType: string;
  subnetId: string;
  zone: string;
}

export const TASK_TAG = "snapctl:task";
export const ATTEMPT_TAG = "snapctl:attempt";
export const ENVIRONMENT_TAG = "snapctl:compute-env";

// EC2 user data is limited to 16 KB before base64.
const USER_DATA_LIMIT = 16 * 1024;

// Launches task instances with RunInstances, one at a time: spot (one-time, terminate on
// interruption) or on-demand, trying the configured instance types in order in each
// subnet, subnets outside the zone to avoid first.
export class Ec2Provider implements Provider {
  readonly kind = "ec2";
  private readonly client: EC2Client;
  private readonly env: Ec2ComputeEnvironment;
  private readonly archOf: (instanceType: string) => Arch;
  private readonly logger: Logger;
  private subnetZones?: Promise<Map<string, string>>;

  constructor(options: Ec2ProviderOptions) {
    this.client = options.client;
    this.env = options.environment;
    this.archOf = options.archOf ?? instanceArch;
    this.logger = options.logger ?? silentLogger;
  }

  async launch(request: LaunchRequest): Promise<LaunchedInstance> {
    const { task, attempt, signal } = request;
    if (signal?.aborted)
      throw new ProviderError("PROVIDER_ABORTED", `Launch for task "${task.id}" aborted`, {
        cause: signal.reason,
      });
    const types = this.env.instanceTypes.filter((type) => this.archOf(type) === request.arch);
    if (types.length === 0) {
      throw new ProviderError(
        "PROVIDER_NO_MATCHING_INSTANCE_TYPE",
        `Cannot launch task "${task.id}": none of the instance types of "${this.env.name}" (${this.env.instanceTypes.join(", ")}) is ${request.arch}`,
      );
    }
    const candidates = await this.candidates(types, request.zonePreference.avoid, signal);
    const userData = userDataScript(request.userDataCommand, { env: request.userDataEnv });
    if (Buffer.byteLength(userData) > USER_DATA_LIMIT) {
      throw new ProviderError(
        "PROVIDER_LAUNCH_FAILED",
        `Cannot launch task "${task.id}": user data is ${Buffer.byteLength(userData)} bytes, EC2 takes at most ${USER_DATA_LIMIT}`,
      );
    }
    const failures: string[] = [];
    const fullSubnets = new Set<string>();
    // At most types x subnets requests, each for one instance.
    for (const candidate of candidates) {
      if (fullSubnets.has(candidate.subnetId)) continue;
      const input = this.runInstancesInput(request, candidate, userData);
      try {
        const output = await this.client.send(new RunInstancesCommand(input), { abortSignal: signal });
        const instance = output.Instances?.[0];
        if (!instance?.InstanceId) {
          throw new ProviderError(
            "PROVIDER_LAUNCH_FAILED",
            `RunInstances for task "${task.id}" returned no instance`,
          );
        }
        return {
          instanceId: instance.InstanceId,
          zone: instance.Placement?.AvailabilityZone ?? candidate.zone,
          instanceType: instance.InstanceType ?? candidate.instanceType,
          market: request.market,
          arch: request.arch,
        };
      } catch (err) {
        if (err instanceof ProviderError) throw err;
        if (isAbort(err) || !isCapacityError(err)) {
          throw providerError(
            "PROVIDER_LAUNCH_FAILED",
            `Cannot launch ${candidate.instanceType} in ${candidate.subnetId} (${candidate.zone}) for task "${task.id}"`,
            err,
          );
        }
        const code = ec2ErrorCode(err);
        if (code === "InsufficientFreeAddressesInSubnet") fullSubnets.add(candidate.subnetId);
        failures.push(`${candidate.instanceType} in ${candidate.zone}: ${code}`);
        this.logger.warn(
          { task: task.id, attempt, ...candidate, code },
          "launch candidate failed, trying the next one",
        );
      }
    }
    throw new ProviderError(
      "PROVIDER_INSUFFICIENT_CAPACITY",
      `Cannot launch task "${task.id}" (attempt ${attempt}, ${request.market}, ${request.arch}): no capacity (${failures.join("; ")})`,
      { retryable: true },
    );
  }

  async terminate(instanceId: string, options: ProviderCallOptions = {}): Promise<void> {
    try {
      await this.client.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }), {
        abortSignal: options.signal,
      });
    } catch (err) {
      if (ec2ErrorCode(err) === "InvalidInstanceID.NotFound") return;
      throw providerError("PROVIDER_TERMINATE_FAILED", `Cannot terminate instance "${instanceId}"`, err);
    }
  }

  async describe(
    instanceId: string,
    options: ProviderCallOptions = {},
  ): Promise<InstanceDescription | undefined> {
    let output: DescribeInstancesCommandOutput;
    try {
      output = await this.client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }), {
        abortSignal: options.signal,
      });
    } catch (err) {
      if (ec2ErrorCode(err) === "InvalidInstanceID.NotFound") return undefined;
      throw providerError("PROVIDER_DESCRIBE_FAILED", `Cannot describe instance "${instanceId}"`, err);
    }
    const instance = output.Reservations?.[0]?.Instances?.[0];
    return instance ? this.description(instance) : undefined;
  }

  async findTaskInstances(taskId: string, options: ProviderCallOptions = {}): Promise<InstanceDescription[]> {
    const found: InstanceDescription[] = [];
    let nextToken: string | undefined;
    // Pages of at most 100 instances; a task has a handful at most.
    do {
      let output: DescribeInstancesCommandOutput;
      try {
        output = await this.client.send(
          new DescribeInstancesCommand({
            Filters: [
              { Name: `tag:${TASK_TAG}`, Values: [taskId] },
              { Name: `tag:${ENVIRONMENT_TAG}`, Values: [this.env.name] },
              { Name: "instance-state-name", Values: ["pending", "running", "stopping", "stopped"] },
            ],
            MaxResults: 100,
            NextToken: nextToken,
          }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        throw providerError("PROVIDER_DESCRIBE_FAILED", `Cannot list the instances of task "${taskId}"`, err);
      }
      for (const reservation of output.Reservations ?? []) {
        for (const instance of reservation.Instances ?? []) found.push(this.description(instance));
      }
      nextToken = output.NextToken;
    } while (nextToken);
    return found;
  }

  // Every (type, subnet) pair to try, in order: subnets outside the zone to avoid first,
  // in configured order, and within each subnet the types in configured order.
  private async candidates(
    types: string[],
    avoid: string | undefined,
    signal?: AbortSignal,
  ): Promise<Candidate[]> {
    const zones = await this.zonesOfSubnets(signal);
    const subnets = this.env.ec2.subnets.map((subnetId) => ({ subnetId, zone: zones.get(subnetId) ?? "" }));
    const ordered = [...subnets.filter((s) => s.zone !== avoid), ...subnets.filter((s) => s.zone === avoid)];
    return ordered.flatMap((subnet) => types.map((instanceType) => ({ ...subnet, instanceType })));
  }

  // subnet id -> availability zone, asked once per provider.
  private zonesOfSubnets(signal?: AbortSignal): Promise<Map<string, string>> {
    if (!this.subnetZones) {
      const lookup = this.client
        .send(new DescribeSubnetsCommand({ SubnetIds: this.env.ec2.subnets }), { abortSignal: signal })
        .then(
          (output) =>
            new Map((output.Subnets ?? []).map((s) => [s.SubnetId ?? "", s.AvailabilityZone ?? ""])),
        );
      // A failed lookup is not cached: the next launch asks again.
      this.subnetZones = lookup.catch((err: unknown) => {
        this.subnetZones = undefined;
        throw providerError(
          "PROVIDER_DESCRIBE_FAILED",
          `Cannot look up the zones of subnets ${this.env.ec2.subnets.join(", ")}`,
          err,
        );
      });
    }
    return this.subnetZones;
  }

  private runInstancesInput(
    request: LaunchRequest,
    candidate: Candidate,
    userData: string,
  ): RunInstancesCommandInput {
    const { ec2 } = this.env;
    const tags: Tag[] = [
      ...Object.entries(ec2.tags).map(([Key, Value]) => ({ Key, Value })),
      { Key: "Name", Value: `snapctl ${request.task.name ?? request.task.id} #${request.attempt}` },
      { Key: TASK_TAG, Value: request.task.id },
      { Key: ATTEMPT_TAG, Value: String(request.attempt) },
      { Key: ENVIRONMENT_TAG, Value: this.env.name },
    ];
    const input: RunInstancesCommandInput = {
      MinCount: 1,
      MaxCount: 1,
      InstanceType: candidate.instanceType as RunInstancesCommandInput["InstanceType"],
      SubnetId: candidate.subnetId,
      UserData: Buffer.from(userData).toString("base64"),
      // The agent powers the instance off when it exits: that must end the bill too.
      InstanceInitiatedShutdownBehavior: "terminate",
      TagSpecifications: [
        { ResourceType: "instance", Tags: tags },
        { ResourceType: "volume", Tags: tags },
      ],
      // Same task, attempt and candidate => same token: a RunInstances retried after a
      // timeout, or repeated by a controller that took over, returns the first instance
      // instead of launching a second one.
      ClientToken: clientToken(this.env.name, request.task.id, request.attempt, candidate),
    };
    if (ec2.ami) input.ImageId = ec2.ami;
    if (ec2.launchTemplate) {
      input.LaunchTemplate = ec2.launchTemplate.id
        ? { LaunchTemplateId: ec2.launchTemplate.id, Version: ec2.launchTemplate.version }
        : { LaunchTemplateName: ec2.launchTemplate.name, Version: ec2.launchTemplate.version };
    }
    if (ec2.securityGroups.length > 0) input.SecurityGroupIds = ec2.securityGroups;
    if (ec2.instanceProfile) {
      input.IamInstanceProfile = ec2.instanceProfile.startsWith("arn:")
        ? { Arn: ec2.instanceProfile }
        : { Name: ec2.instanceProfile };
    }
    if (ec2.keyName) input.KeyName = ec2.keyName;
    if (request.market === "spot") {
      input.InstanceMarketOptions = {
        MarketType: "spot",
        SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" },
      };
    }
    return input;
  }

  private description(instance: Instance): InstanceDescription {
    const tag = (key: string) => instance.Tags?.find((t) => t.Key === key)?.Value;
    const attempt = tag(ATTEMPT_TAG);
    const type = instance.InstanceType ?? "";
    return {
      instanceId: instance.InstanceId ?? "",
      zone: instance.Placement?.AvailabilityZone ?? "",
      instanceType: type,
      market: instance.InstanceLifecycle === "spot" ? "spot" : "on-demand",
      arch:
        instance.Architecture === "arm64" ? "arm64" : instance.Architecture ? "x86_64" : this.archOf(type),
      state: (instance.State?.Name ?? "pending") as InstanceState,
      taskId: tag(TASK_TAG),
      attempt: attempt === undefined ? undefined : Number(attempt),
    };
  }
}

// An idempotency token of at most 64 ASCII characters, as EC2 requires.
function clientToken(environment: string, taskId: string, attempt: number, candidate: Candidate): string {
  const key = [environment, taskId, attempt, candidate.instanceType, candidate.subnetId].join("\n");
  return `snapctl-${createHash("sha256").update(key).digest("hex").slice(0, 48)}`;
}
