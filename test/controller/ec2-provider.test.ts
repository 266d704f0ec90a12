// EC2 is mocked here (aws-sdk-client-mock) because no EC2 endpoint can run on this
// machine: these tests check the shape of the requests the provider sends and how it
// reacts to EC2's answers, not EC2 itself.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  agentCommand,
  createProvider,
  type Ec2ComputeEnvironment,
  Ec2Provider,
  instanceArch,
  type LaunchRequest,
  LocalProvider,
  ProviderError,
  parseComputeEnvironment,
  userDataScript,
} from "../../controller/index.js";

const ec2Mock = mockClient(EC2Client);
const client = new EC2Client({
  region: "eu-west-1",
  credentials: { accessKeyId: "x", secretAccessKey: "y" },
});

const SUBNETS = {
  a: "subnet-0000000000000000a",
  b: "subnet-0000000000000000b",
  c: "subnet-0000000000000000c",
};

function environment(
  overrides: Record<string, unknown> = {},
  ec2: Record<string, unknown> = {},
): Ec2ComputeEnvironment {
  const env = parseComputeEnvironment({
    name: "spot-env",
    provider: "ec2",
    region: "eu-west-1",
    workDir: "s3://bucket-1/work",
    instanceTypes: ["m6i.large", "m5.large", "m6g.large"],
    ec2: {
      ami: "ami-0123456789abcdef0",
      subnets: [SUBNETS.a, SUBNETS.b, SUBNETS.c],
      securityGroups: ["sg-0123456789abcdef0"],
      instanceProfile: "snapctl-agent",
      keyName: "ops",
      tags: { team: "genomics" },
      ...ec2,
    },
    ...overrides,
  });
  if (env.provider !== "ec2") throw new Error("unreachable");
  return env;
}

function capacityError(name = "InsufficientInstanceCapacity"): EC2ServiceException {
  return new EC2ServiceException({
    name,
    $fault: "server",
    $metadata: {},
    message: `We currently do not have sufficient capacity (${name})`,
  });
}

function clientError(name: string): EC2ServiceException {
  return new EC2ServiceException({ name, $fault: "client", $metadata: {}, message: `${name} happened` });
}

function request(overrides: Partial<LaunchRequest> = {}): LaunchRequest {
  return {
    task: { id: "t-42", name: "align" },
    attempt: 2,
    zonePreference: {},
    market: "spot",
    arch: "x86_64",
    userDataCommand: agentCommand({
      taskId: "t-42",
      workDir: "s3://bucket-1/work",
      restore: { snapshotId: "snap-7" },
      fencingToken: 9,
    }),
    ...overrides,
  };
}

let launched = 0;
function runInstancesInputs(): RunInstancesCommandInput[] {
  return ec2Mock.commandCalls(RunInstancesCommand).map((call) => call.args[0].input);
}

beforeEach(() => {
  ec2Mock.reset();
  ec2Mock.on(DescribeSubnetsCommand).resolves({
    Subnets: [
      { SubnetId: SUBNETS.a, AvailabilityZone: "eu-west-1a" },
      { SubnetId: SUBNETS.b, AvailabilityZone: "eu-west-1b" },
      { SubnetId: SUBNETS.c, AvailabilityZone: "eu-west-1c" },
    ],
  });
  ec2Mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
    launched += 1;
    const zone = Object.entries(SUBNETS).find(([, id]) => id === input.SubnetId)?.[0];
    return {
      Instances: [
        {
          InstanceId: `i-${launched}`,
          InstanceType: input.InstanceType,
          Placement: { AvailabilityZone: `eu-west-1${zone}` },
        },
      ],
    };
  });
});

afterEach(() => {
  ec2Mock.reset();
});

describe("Ec2Provider.launch", () => {
  it("sends a one-time spot RunInstances with the configured launch details, tags and user data", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const instance = await provider.launch(request());
    expect(instance).toMatchObject({
      zone: "eu-west-1a",
      instanceType: "m6i.large",
      market: "spot",
      arch: "x86_64",
    });
    const [input, ...rest] = runInstancesInputs();
    expect(rest).toHaveLength(0);
    expect(input).toMatchObject({
      MinCount: 1,
      MaxCount: 1,
      ImageId: "ami-0123456789abcdef0",
      InstanceType: "m6i.large",
      SubnetId: SUBNETS.a,
      SecurityGroupIds: ["sg-0123456789abcdef0"],
      IamInstanceProfile: { Name: "snapctl-agent" },
      KeyName: "ops",
      InstanceInitiatedShutdownBehavior: "terminate",
      InstanceMarketOptions: {
        MarketType: "spot",
        SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" },
      },
    });
    expect(input?.LaunchTemplate).toBeUndefined();
    expect(input?.ClientToken?.length).toBeLessThanOrEqual(64);
    for (const spec of input?.TagSpecifications ?? []) {
      expect(spec.Tags).toEqual(
        expect.arrayContaining([
          { Key: "team", Value: "genomics" },
          { Key: "snapctl:task", Value: "t-42" },
          { Key: "snapctl:attempt", Value: "2" },
          { Key: "snapctl:compute-env", Value: "spot-env" },
          { Key: "Name", Value: "snapctl align #2" },
        ]),
      );
    }
    expect(input?.TagSpecifications?.map((s) => s.ResourceType)).toEqual(["instance", "volume"]);
  });

  it("passes user data that decodes to a bash script starting the agent in restore mode", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    await provider.launch(request({ userDataEnv: { SNAPCTL_REDIS_URL: "redis://10.0.0.5:6379" } }));
    const script = Buffer.from(runInstancesInputs()[0]?.UserData ?? "", "base64").toString("utf8");
    expect(script.startsWith("#!/bin/bash\n")).toBe(true);
    expect(script).toContain("export SNAPCTL_REDIS_URL=redis://10.0.0.5:6379\n");
    expect(script).toContain(
      "snapctl agent run --task t-42 --workdir s3://bucket-1/work --restore --snapshot snap-7 --fencing-token 9 >>/var/log/snapctl-agent.log 2>&1",
    );
    expect(script).toContain("shutdown -h now");
  });

  it("prefers a subnet outside the zone just reclaimed", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const instance = await provider.launch(request({ zonePreference: { avoid: "eu-west-1a" } }));
    expect(instance.zone).toBe("eu-west-1b");
    expect(runInstancesInputs().map((i) => i.SubnetId)).toEqual([SUBNETS.b]);
  });

  it("falls back across instance types, then zones, on capacity errors, and uses the avoided zone last", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    ec2Mock
      .on(RunInstancesCommand)
      .rejectsOnce(capacityError())
      .rejectsOnce(capacityError("SpotMaxPriceTooLow"))
      .rejectsOnce(capacityError("Unsupported"))
      .rejectsOnce(capacityError())
      .resolvesOnce({
        Instances: [
          {
            InstanceId: "i-fallback",
            InstanceType: "m5.large",
            Placement: { AvailabilityZone: "eu-west-1a" },
          },
        ],
      });
    const instance = await provider.launch(request({ zonePreference: { avoid: "eu-west-1b" } }));
    expect(instance).toMatchObject({
      instanceId: "i-fallback",
      zone: "eu-west-1a",
      instanceType: "m5.large",
    });
    // x86_64 types only (m6g is arm64), each subnet in turn, the avoided one (b) last.
    expect(runInstancesInputs().map((i) => [i.SubnetId, i.InstanceType])).toEqual([
      [SUBNETS.a, "m6i.large"],
      [SUBNETS.a, "m5.large"],
      [SUBNETS.c, "m6i.large"],
      [SUBNETS.c, "m5.large"],
      [SUBNETS.b, "m6i.large"],
    ]);
    // Each candidate has its own idempotency token.
    expect(new Set(runInstancesInputs().map((i) => i.ClientToken)).size).toBe(5);
  });

  it("skips a subnet with no free addresses for the remaining types", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    ec2Mock
      .on(RunInstancesCommand)
      .rejectsOnce(capacityError("InsufficientFreeAddressesInSubnet"))
      .resolves({
        Instances: [
          { InstanceId: "i-9", InstanceType: "m6i.large", Placement: { AvailabilityZone: "eu-west-1b" } },
        ],
      });
    await provider.launch(request());
    expect(runInstancesInputs().map((i) => [i.SubnetId, i.InstanceType])).toEqual([
      [SUBNETS.a, "m6i.large"],
      [SUBNETS.b, "m6i.large"],
    ]);
  });

  it("gives up with a retryable PROVIDER_INSUFFICIENT_CAPACITY after every candidate", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    ec2Mock.on(RunInstancesCommand).rejects(capacityError());
    const err = (await provider.launch(request()).catch((e: unknown) => e)) as ProviderError;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.code).toBe("PROVIDER_INSUFFICIENT_CAPACITY");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('task "t-42"');
    expect(err.message).toContain("m5.large in eu-west-1c: InsufficientInstanceCapacity");
    expect(runInstancesInputs()).toHaveLength(6);
  });

  it("stops at the first error that another candidate would not fix", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    ec2Mock.on(RunInstancesCommand).rejects(clientError("InvalidAMIID.NotFound"));
    const err = (await provider.launch(request()).catch((e: unknown) => e)) as ProviderError;
    expect(err.code).toBe("PROVIDER_LAUNCH_FAILED");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("InvalidAMIID.NotFound");
    expect(runInstancesInputs()).toHaveLength(1);

    ec2Mock.on(RunInstancesCommand).rejects(clientError("RequestLimitExceeded"));
    const throttled = (await provider.launch(request()).catch((e: unknown) => e)) as ProviderError;
    expect(throttled).toMatchObject({ code: "PROVIDER_LAUNCH_FAILED", retryable: true });
  });

  it("launches on-demand without market options when asked", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const instance = await provider.launch(request({ market: "on-demand" }));
    expect(instance.market).toBe("on-demand");
    expect(runInstancesInputs()[0]?.InstanceMarketOptions).toBeUndefined();
  });

  it("uses only instance types of the snapshot's architecture", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const instance = await provider.launch(request({ arch: "arm64" }));
    expect(instance).toMatchObject({ instanceType: "m6g.large", arch: "arm64" });
    const onlyArm = new Ec2Provider({ client, environment: environment({ instanceTypes: ["c7g.large"] }) });
    const err = (await onlyArm.launch(request()).catch((e: unknown) => e)) as ProviderError;
    expect(err.code).toBe("PROVIDER_NO_MATCHING_INSTANCE_TYPE");
    expect(err.message).toContain("c7g.large");
  });

  it("launches from a launch template with an instance profile ARN", async () => {
    const env = environment(
      {},
      {
        ami: undefined,
        launchTemplate: { name: "snapctl-tpl", version: "3" },
        instanceProfile: "arn:aws:iam::123456789012:instance-profile/agent",
        securityGroups: [],
      },
    );
    await new Ec2Provider({ client, environment: env }).launch(request());
    const input = runInstancesInputs()[0];
    expect(input?.ImageId).toBeUndefined();
    expect(input?.LaunchTemplate).toEqual({ LaunchTemplateName: "snapctl-tpl", Version: "3" });
    expect(input?.IamInstanceProfile).toEqual({ Arn: "arn:aws:iam::123456789012:instance-profile/agent" });
    expect(input?.SecurityGroupIds).toBeUndefined();
  });

  it("repeats the same idempotency token for the same task, attempt and candidate", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    await provider.launch(request());
    await provider.launch(request());
    await provider.launch(request({ attempt: 3 }));
    const tokens = runInstancesInputs().map((i) => i.ClientToken);
    expect(tokens[0]).toBe(tokens[1]);
    expect(tokens[2]).not.toBe(tokens[0]);
  });

  it("honours an aborted signal", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const err = (await provider
      .launch(request({ signal: AbortSignal.abort() }))
      .catch((e: unknown) => e)) as ProviderError;
    expect(err.code).toBe("PROVIDER_ABORTED");
    expect(runInstancesInputs()).toHaveLength(0);
  });
});

describe("Ec2Provider terminate and describe", () => {
  it("terminates by instance id, and treats an instance already gone as terminated", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    ec2Mock
      .on(TerminateInstancesCommand)
      .resolvesOnce({})
      .rejectsOnce(clientError("InvalidInstanceID.NotFound"))
      .rejects(clientError("UnauthorizedOperation"));
    await provider.terminate("i-1");
    await provider.terminate("i-gone");
    const err = (await provider.terminate("i-2").catch((e: unknown) => e)) as ProviderError;
    expect(err).toMatchObject({ code: "PROVIDER_TERMINATE_FAILED", retryable: false });
    expect(err.message).toContain('"i-2"');
    expect(ec2Mock.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([
      { InstanceIds: ["i-1"] },
      { InstanceIds: ["i-gone"] },
      { InstanceIds: ["i-2"] },
    ]);
  });

  it("describes an instance and finds a task's instances by tag", async () => {
    const provider = new Ec2Provider({ client, environment: environment() });
    const instance = {
      InstanceId: "i-7",
      InstanceType: "m6g.large" as const,
      Architecture: "arm64" as const,
      InstanceLifecycle: "spot" as const,
      State: { Name: "running" as const },
      Placement: { AvailabilityZone: "eu-west-1c" },
      Tags: [
        { Key: "snapctl:task", Value: "t-42" },
        { Key: "snapctl:attempt", Value: "3" },
      ],
    };
    ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance] }] });
    expect(await provider.describe("i-7")).toEqual({
      instanceId: "i-7",
      zone: "eu-west-1c",
      instanceType: "m6g.large",
      market: "spot",
      arch: "arm64",
      state: "running",
      taskId: "t-42",
      attempt: 3,
    });
    expect(await provider.findTaskInstances("t-42")).toHaveLength(1);
    const filters = ec2Mock.commandCalls(DescribeInstancesCommand)[1]?.args[0].input.Filters;
    expect(filters).toEqual([
      { Name: "tag:snapctl:task", Values: ["t-42"] },
      { Name: "tag:snapctl:compute-env", Values: ["spot-env"] },
      { Name: "instance-state-name", Values: ["pending", "running", "stopping", "stopped"] },
    ]);
    ec2Mock.on(DescribeInstancesCommand).rejects(clientError("InvalidInstanceID.NotFound"));
    expect(await provider.describe("i-none")).toBeUndefined();
  });
});

describe("helpers", () => {
  it("tells Graviton instance types from x86_64 ones", () => {
    for (const type of [
      "m6g.large",
      "c7gn.xlarge",
      "r8gd.2xlarge",
      "t4g.micro",
      "x2gd.large",
      "im4gn.large",
      "g5g.xlarge",
      "a1.medium",
      "hpc7g.4xlarge",
    ]) {
      expect(instanceArch(type), type).toBe("arm64");
    }
    for (const type of [
      "m5.large",
      "m6i.large",
      "m6a.large",
      "c5n.large",
      "g5.xlarge",
      "p4d.24xlarge",
      "m7i-flex.large",
      "r7iz.large",
      "inf2.xlarge",
    ]) {
      expect(instanceArch(type), type).toBe("x86_64");
    }
  });

  it("builds the agent command", () => {
    expect(agentCommand({ taskId: "t", workDir: "s3://b/w" })).toEqual([
      "snapctl",
      "agent",
      "run",
      "--task",
      "t",
      "--workdir",
      "s3://b/w",
    ]);
  });

  it("writes a user data script that bash runs with every argument intact", async () => {
    const dir = await mkdtemp(join(tmpdir(), "snapctl-userdata-"));
    try {
      const log = join(dir, "agent.log");
      const args = ["it's", "$HOME", "a b", "`x`", 'q"uote', ""];
      const script = userDataScript(["printf", "[%s]\\n", ...args], {
        env: { SNAPCTL_X: "v'1 $y" },
        logFile: log,
        shutdownOnExit: false,
      });
      await execa("bash", ["-c", `${script}\nprintf '[%s]\\n' "$SNAPCTL_X" >>${log}`]);
      expect(await readFile(log, "utf8")).toBe(`${[...args, "v'1 $y"].map((a) => `[${a}]`).join("\n")}\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("creates the provider an environment names; local needs a base directory", () => {
    const local = parseComputeEnvironment({
      name: "l",
      provider: "local",
      region: "us-east-1",
      workDir: "s3://bkt",
    });
    expect(() => createProvider(local)).toThrow(expect.objectContaining({ code: "PROVIDER_LAUNCH_FAILED" }));
    expect(createProvider(local, { local: { baseDir: "/tmp/snap-local-instances" } })).toBeInstanceOf(
      LocalProvider,
    );
    expect(createProvider(environment(), { ec2Client: client })).toBeInstanceOf(Ec2Provider);
  });
});
