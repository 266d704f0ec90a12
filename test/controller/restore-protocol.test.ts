// The restore protocol of docs/compute-environment.md ("Restore leases and fencing
// tokens") driven through the public API: a real redis-server for the registry, and EC2
// mocked with aws-sdk-client-mock because no EC2 endpoint can run on this machine.
import {
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  EC2Client,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { hasCode } from "../../common/errors.js";
import {
  agentCommand,
  type ComputeEnvironment,
  Ec2Provider,
  parseComputeEnvironment,
  planRecovery,
  type TaskRegistry as Registry,
  TaskRegistry,
} from "../../controller/index.js";
import { RedisFixture } from "./redis-fixture.js";

const redis = new RedisFixture();
beforeAll(() => redis.start());
afterAll(() => redis.stop());

const ec2Mock = mockClient(EC2Client);
const client = new EC2Client({
  region: "eu-west-1",
  credentials: { accessKeyId: "x", secretAccessKey: "y" },
});
const env = parseComputeEnvironment({
  name: "spot-env",
  provider: "ec2",
  region: "eu-west-1",
  workDir: "s3://bucket-1/work",
  instanceTypes: ["m6i.large", "m5.large"],
  ec2: {
    ami: "ami-0123456789abcdef0",
    subnets: ["subnet-0000000000000000a", "subnet-0000000000000000b"],
    instanceProfile: "agent",
  },
  snapshots: { enabled: true },
});

let launches = 0;
beforeEach(() => {
  ec2Mock.reset();
  ec2Mock.on(DescribeSubnetsCommand).resolves({
    Subnets: [
      { SubnetId: "subnet-0000000000000000a", AvailabilityZone: "eu-west-1a" },
      { SubnetId: "subnet-0000000000000000b", AvailabilityZone: "eu-west-1b" },
    ],
  });
  ec2Mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
    launches += 1;
    const zone = input.SubnetId?.endsWith("a") ? "eu-west-1a" : "eu-west-1b";
    return {
      Instances: [
        {
          InstanceId: `i-launch${launches}`,
          InstanceType: input.InstanceType,
          Placement: { AvailabilityZone: zone },
        },
      ],
    };
  });
  ec2Mock.on(TerminateInstancesCommand).resolves({});
});

// One controller's attempt to restore an interrupted task, following the documented protocol.
async function restoreOnce(
  registry: Registry,
  provider: Ec2Provider,
  environment: ComputeEnvironment,
  taskId: string,
  owner: string,
) {
  const token = await registry.acquireRestoreLease(taskId, owner, 60_000);
  if (token === null) return "lease held elsewhere";
  try {
    const task = await registry.requireTask(taskId);
    if (task.state !== "interrupted") return `nothing to do in ${task.state}`;
    const plan = planRecovery(task, environment);
    if (plan.action !== "restore") return plan.action;
    await registry.transition(taskId, "restoring", {
      from: "interrupted",
      fencingToken: token,
      reason: `restore ${plan.snapshotId}`,
    });
    const instance = await provider.launch({
      task,
      attempt: plan.attempt,
      zonePreference: { avoid: plan.avoidZone },
      market: plan.market,
      arch: plan.arch,
      userDataCommand: agentCommand({
        taskId,
        workDir: environment.workDir,
        restore: { snapshotId: plan.snapshotId },
        fencingToken: token,
      }),
    });
    try {
      await registry.recordLaunch(taskId, { fencingToken: token, ...instance });
    } catch (err) {
      await provider.terminate(instance.instanceId);
      throw err;
    }
    return "restored";
  } catch (err) {
    if (hasCode(err, "REGISTRY_STATE_CONFLICT")) return "lost the race";
    throw err;
  } finally {
    await registry.releaseRestoreLease(taskId, owner, token);
  }
}

async function interruptedTask(registry: Registry, id: string): Promise<void> {
  await registry.createTask({ id, command: ["sleep", "1000"], computeEnv: env.name });
  const token = (await registry.acquireRestoreLease(id, "first", 60_000)) as number;
  await registry.recordLaunch(id, {
    fencingToken: token,
    instanceId: `${id}-first`,
    zone: "eu-west-1a",
    arch: "x86_64",
    instanceType: "m6i.large",
    market: "spot",
  });
  await registry.releaseRestoreLease(id, "first", token);
  const base = { taskId: id, instanceId: `${id}-first` };
  await registry.applyEvent({ ...base, id: `${id}-e1`, type: "started", at: 1 });
  await registry.applyEvent({
    ...base,
    id: `${id}-e2`,
    type: "checkpoint-committed",
    at: 2,
    snapshotId: "snap-1",
    bytesStored: 1,
    progressMs: 50,
    arch: "x86_64",
  });
  await registry.applyEvent({ ...base, id: `${id}-e3`, type: "interrupted", at: 3 });
}

it("two controllers restoring the same task launch exactly one instance, away from the reclaimed zone", async () => {
  const prefix = redis.prefix();
  const a = new TaskRegistry({ redis: redis.connect(), prefix });
  const b = new TaskRegistry({ redis: redis.connect(), prefix });
  const provider = new Ec2Provider({
    client,
    environment: env as Extract<ComputeEnvironment, { provider: "ec2" }>,
  });
  for (let round = 0; round < 10; round++) {
    const id = `p-${round}`;
    await interruptedTask(a, id);
    const before = ec2Mock.commandCalls(RunInstancesCommand).length;
    const outcomes = await Promise.all([
      restoreOnce(a, provider, env, id, "ctl-a"),
      restoreOnce(b, provider, env, id, "ctl-b"),
    ]);
    expect(outcomes.filter((o) => o === "restored")).toHaveLength(1);
    const calls = ec2Mock.commandCalls(RunInstancesCommand).slice(before);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.args[0].input.SubnetId).toBe("subnet-0000000000000000b");
    const task = await a.requireTask(id);
    expect(task).toMatchObject({ state: "restoring", attempts: 2, zone: "eu-west-1b" });
    expect(task.instanceId).toMatch(/^i-launch/);
  }
});

it("a controller that dies mid-restore is replaced; its late actions are refused and its instance adopted, not duplicated", async () => {
  const prefix = redis.prefix();
  const a = new TaskRegistry({ redis: redis.connect(), prefix });
  const b = new TaskRegistry({ redis: redis.connect(), prefix });
  const provider = new Ec2Provider({
    client,
    environment: env as Extract<ComputeEnvironment, { provider: "ec2" }>,
  });
  await interruptedTask(a, "crash");

  // A: lease, restoring, launch... and it dies before recording the instance.
  const staleToken = (await a.acquireRestoreLease("crash", "ctl-a", 100)) as number;
  await a.transition("crash", "restoring", { fencingToken: staleToken });
  const orphan = await provider.launch({
    task: { id: "crash" },
    attempt: 2,
    zonePreference: { avoid: "eu-west-1a" },
    market: "spot",
    arch: "x86_64",
    userDataCommand: ["true"],
  });
  while (await a.leases.get("crash")) await new Promise((r) => setTimeout(r, 25));

  // B takes over: the task is restoring with a launch needed; it looks for an instance
  // already launched for the task (tags) before launching one.
  const token = (await b.acquireRestoreLease("crash", "ctl-b", 60_000)) as number;
  expect(token).toBeGreaterThan(staleToken);
  expect(await b.requireTask("crash")).toMatchObject({ state: "restoring", launch: "needed" });
  ec2Mock.on(DescribeInstancesCommand).resolves({
    Reservations: [
      {
        Instances: [
          {
            InstanceId: orphan.instanceId,
            InstanceType: "m6i.large",
            Placement: { AvailabilityZone: orphan.zone },
            State: { Name: "running" },
            InstanceLifecycle: "spot",
            Tags: [
              { Key: "snapctl:task", Value: "crash" },
              { Key: "snapctl:attempt", Value: "2" },
            ],
          },
        ],
      },
    ],
  });
  const found = await provider.findTaskInstances("crash");
  expect(found.map((i) => [i.instanceId, i.attempt])).toEqual([[orphan.instanceId, 2]]);
  await b.recordLaunch("crash", { fencingToken: token, ...(found[0] as (typeof found)[number]) });

  // A comes back and tries to finish its restore: refused, so it must terminate what it launched.
  const late = await a
    .recordLaunch("crash", { fencingToken: staleToken, ...orphan })
    .then(() => "accepted")
    .catch((err: unknown) => (err as { code: string }).code);
  expect(late).toBe("REGISTRY_STALE_FENCING_TOKEN");
  const launched = ec2Mock.commandCalls(RunInstancesCommand).length;
  expect(launched).toBe(1);
  const task = await b.requireTask("crash");
  expect(task).toMatchObject({ instanceId: orphan.instanceId, attempts: 2, launch: "launched" });
});
