import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  computeEnvironmentJsonSchema,
  loadComputeEnvironment,
  parseComputeEnvironment,
} from "../../controller/index.js";

const examples = join(import.meta.dirname, "../../examples");

const minimalEc2 = {
  name: "ce",
  provider: "ec2",
  region: "us-east-1",
  workDir: "s3://bucket-1/work",
  instanceTypes: ["m5.large"],
  ec2: { ami: "ami-0123456789abcdef0", subnets: ["subnet-0123456789abcdef0"], instanceProfile: "agent" },
};

// Parses `input` expecting failure and returns the problem lines.
function problemsOf(input: unknown): string[] {
  try {
    parseComputeEnvironment(input as object);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe("CONFIG_INVALID");
    for (const line of (err as ConfigError).problems) expect((err as Error).message).toContain(line);
    return (err as ConfigError).problems;
  }
  throw new Error("expected the input to be rejected");
}

describe("compute environment examples", () => {
  it("parses examples/compute-env.local.yaml", async () => {
    const env = await loadComputeEnvironment(join(examples, "compute-env.local.yaml"));
    expect(env.provider).toBe("local");
    expect(env.snapshots).toMatchObject({
      enabled: true,
      intervalMs: 90_000,
      maxSpotAttempts: 5,
      onDemandAfter: 3,
    });
    expect(env.agent).toEqual({ imdsPollIntervalMs: 500, noticeWindowMs: 20_000, keepGenerations: 2 });
    if (env.provider !== "local") throw new Error("unreachable");
    expect(env.local.zones).toEqual(["local-1a", "local-1b"]);
  });

  it("parses examples/compute-env.ec2.yaml", async () => {
    const env = await loadComputeEnvironment(join(examples, "compute-env.ec2.yaml"));
    if (env.provider !== "ec2") throw new Error(`expected ec2, got ${env.provider}`);
    expect(env.ec2.subnets).toHaveLength(3);
    expect(env.ec2.securityGroups).toEqual(["sg-0123456789abcdef0"]);
    expect(env.ec2.tags).toEqual({ team: "genomics", "cost-center": "4711" });
    expect(env.instanceTypes[0]).toBe("m6i.xlarge");
    expect(env.snapshots.intervalMs).toBe(300_000);
  });
});

it("examples/compute-env.schema.json is the schema the code generates", async () => {
  const { readFile } = await import("node:fs/promises");
  const file = JSON.parse(await readFile(join(examples, "compute-env.schema.json"), "utf8"));
  // Regenerate with: JSON.stringify(computeEnvironmentJsonSchema(), null, 2)
  expect(file).toEqual(computeEnvironmentJsonSchema());
  expect(JSON.stringify(file)).toContain('"maxSpotAttempts"');
});

describe("defaults", () => {
  it("fills in every default of a minimal ec2 environment", () => {
    const env = parseComputeEnvironment(minimalEc2);
    expect(env.market).toBe("spot");
    expect(env.snapshots).toEqual({
      enabled: false,
      intervalMs: 300_000,
      incremental: "auto",
      tcpMode: "close",
      compressionLevel: 3,
      maxSpotAttempts: 5,
      onDemandAfter: 3,
    });
    expect(env.agent).toEqual({ imdsPollIntervalMs: 2_000, noticeWindowMs: null, keepGenerations: 2 });
    if (env.provider !== "ec2") throw new Error("unreachable");
    expect(env.ec2.securityGroups).toEqual([]);
    expect(env.ec2.tags).toEqual({});
  });

  it("fills in local defaults and accepts JSON text", () => {
    const json = JSON.stringify({ name: "l", provider: "local", region: "us-east-1", workDir: "s3://bkt" });
    const env = parseComputeEnvironment(json);
    if (env.provider !== "local") throw new Error("unreachable");
    expect(env.instanceTypes).toEqual(["m5.large"]);
    expect(env.local.zones).toEqual(["local-1a", "local-1b"]);
  });

  it("keeps a partial snapshots section's other defaults and accepts onDemandAfter: null", () => {
    const env = parseComputeEnvironment({ ...minimalEc2, snapshots: { enabled: true, onDemandAfter: null } });
    expect(env.snapshots).toMatchObject({
      enabled: true,
      onDemandAfter: null,
      maxSpotAttempts: 5,
      intervalMs: 300_000,
    });
  });
});

describe("invalid inputs name the field path and the value", () => {
  const cases: Array<[string, unknown, string]> = [
    ["missing provider", { name: "x" }, 'provider: required; expected "ec2" or "local" (got nothing)'],
    [
      "unknown provider",
      { ...minimalEc2, provider: "gce" },
      'provider: expected "ec2" or "local" (got "gce")',
    ],
    [
      "bad name",
      { ...minimalEc2, name: "a b" },
      'name: expected 1-64 letters, digits, - or _, starting with a letter or digit (got "a b")',
    ],
    [
      "bad region",
      { ...minimalEc2, region: "useast1" },
      'region: expected an AWS region such as us-east-1 (got "useast1")',
    ],
    [
      "workDir not s3",
      { ...minimalEc2, workDir: "/tmp/work" },
      'workDir: expected an s3://bucket/prefix URL with a valid bucket name (got "/tmp/work")',
    ],
    [
      "short bucket",
      { ...minimalEc2, workDir: "s3://ab/x" },
      'workDir: expected an s3://bucket/prefix URL with a valid bucket name (got "s3://ab/x")',
    ],
    [
      "missing workDir",
      { ...minimalEc2, workDir: undefined },
      "workDir: required: an s3://bucket/prefix URL (got nothing)",
    ],
    [
      "bad instance type",
      { ...minimalEc2, instanceTypes: ["m5.large", "huge"] },
      'instanceTypes[1]: expected an EC2 instance type such as m5.large (got "huge")',
    ],
    [
      "duplicate instance type",
      { ...minimalEc2, instanceTypes: ["m5.large", "m5.large"] },
      'instanceTypes: lists the same instance type twice (got ["m5.large","m5.large"])',
    ],
    [
      "bad market",
      { ...minimalEc2, market: "reserved" },
      'market: expected "spot" or "on-demand" (got "reserved")',
    ],
    [
      "interval without unit",
      { ...minimalEc2, snapshots: { interval: 300 } },
      'snapshots.interval: expected a duration such as "90s", "5m" or "1h" (got 300)',
    ],
    [
      "interval too short",
      { ...minimalEc2, snapshots: { interval: "2s" } },
      'snapshots.interval: must be at least 10s (got "2s")',
    ],
    [
      "bad incremental",
      { ...minimalEc2, snapshots: { incremental: "yes" } },
      'snapshots.incremental: expected "auto", "on" or "off" (got "yes")',
    ],
    [
      "bad tcpMode",
      { ...minimalEc2, snapshots: { tcpMode: "keep" } },
      'snapshots.tcpMode: expected "close" or "established" (got "keep")',
    ],
    [
      "compression too high",
      { ...minimalEc2, snapshots: { compressionLevel: 25 } },
      "snapshots.compressionLevel: must be at most 19 (got 25)",
    ],
    [
      "fractional attempts",
      { ...minimalEc2, snapshots: { maxSpotAttempts: 2.5 } },
      "snapshots.maxSpotAttempts: expected an integer from 0 to 100 (got 2.5)",
    ],
    [
      "onDemandAfter above max",
      { ...minimalEc2, snapshots: { maxSpotAttempts: 2, onDemandAfter: 4 } },
      "snapshots.onDemandAfter: must not exceed maxSpotAttempts (2)",
    ],
    [
      "typo in a section",
      { ...minimalEc2, snapshots: { enable: true } },
      "snapshots.enable: unknown field (got true)",
    ],
    [
      "typo at the top",
      { ...minimalEc2, snapshot: { enabled: true } },
      'snapshot: unknown field (got {"enabled":true})',
    ],
    [
      "agent poll too short",
      { ...minimalEc2, agent: { imdsPollInterval: "10ms" } },
      'agent.imdsPollInterval: must be at least 100ms (got "10ms")',
    ],
    [
      "keepGenerations zero",
      { ...minimalEc2, agent: { keepGenerations: 0 } },
      "agent.keepGenerations: must be at least 1 (got 0)",
    ],
    ["ec2 section missing", { ...minimalEc2, ec2: undefined }, "ec2: required;"],
    [
      "both ami and template",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, launchTemplate: { id: "lt-0123456789abcdef0" } } },
      'ec2: set exactly one of ami or launchTemplate (got {"ami":"ami-0123456789abcdef0","launchTemplate":{',
    ],
    [
      "bad subnet",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, subnets: ["subnet-0123456789abcdef0", "net-1"] } },
      'ec2.subnets[1]: expected a subnet id "subnet-..." (got "net-1")',
    ],
    [
      "bad security group",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, securityGroups: ["sg-zz"] } },
      'ec2.securityGroups[0]: expected a security group id "sg-..." (got "sg-zz")',
    ],
    [
      "reserved tag",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, tags: { "snapctl:task": "x" } } },
      'ec2.tags["snapctl:task"]: invalid key, the "snapctl:" prefix is reserved for the controller (got "snapctl:task")',
    ],
    [
      "non-string tag value",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, tags: { team: 7 } } },
      "ec2.tags.team: tag values must be strings (got 7)",
    ],
    [
      "ami without profile",
      { ...minimalEc2, ec2: { ...minimalEc2.ec2, instanceProfile: undefined } },
      "ec2.instanceProfile: required with ami",
    ],
    [
      "template with id and name",
      {
        ...minimalEc2,
        ec2: {
          subnets: ["subnet-0123456789abcdef0"],
          launchTemplate: { id: "lt-0123456789abcdef0", name: "tpl" },
        },
      },
      "ec2.launchTemplate: set exactly one of id or name",
    ],
    [
      "local with ec2 section",
      { name: "l", provider: "local", region: "us-east-1", workDir: "s3://bkt", ec2: {} },
      "ec2: unknown field (got {})",
    ],
    [
      "bad local arch",
      { name: "l", provider: "local", region: "us-east-1", workDir: "s3://bkt", local: { arch: "riscv" } },
      'local.arch: expected "x86_64" or "arm64" (got "riscv")',
    ],
  ];

  it.each(cases)("%s", (_label, input, expected) => {
    const problems = problemsOf(input);
    expect(
      problems.find((line) => line.startsWith(expected)),
      problems.join("\n"),
    ).toBeDefined();
  });

  it("reports every problem at once, one line each", () => {
    const problems = problemsOf({
      ...minimalEc2,
      name: "",
      region: "x",
      snapshots: { compressionLevel: 0, tcpMode: 1 },
    });
    expect(problems.map((line) => line.split(":")[0])).toEqual(
      expect.arrayContaining(["name", "region", "snapshots.compressionLevel", "snapshots.tcpMode"]),
    );
    expect(problems).toHaveLength(4);
  });
});

describe("loading files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "snapctl-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names a missing file", async () => {
    const path = join(dir, "absent.yaml");
    await expect(loadComputeEnvironment(path)).rejects.toMatchObject({
      code: "CONFIG_NOT_FOUND",
      message: expect.stringContaining(path),
    });
  });

  it("names a path that cannot be read, and passes an abort through", async () => {
    await expect(loadComputeEnvironment(dir)).rejects.toMatchObject({
      code: "CONFIG_UNREADABLE",
      message: expect.stringContaining(dir),
    });
    const examplePath = join(examples, "compute-env.local.yaml");
    await expect(loadComputeEnvironment(examplePath, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: "AbortError",
    });
  });

  it("reports YAML syntax errors with the file name", async () => {
    const path = join(dir, "broken.yaml");
    await writeFile(path, "name: [unclosed\nprovider: ec2\n");
    await expect(loadComputeEnvironment(path)).rejects.toMatchObject({
      code: "CONFIG_SYNTAX",
      message: expect.stringContaining(path),
    });
  });

  it("rejects duplicate keys, which YAML would otherwise let the last one win", async () => {
    const path = join(dir, "dup.yaml");
    await writeFile(path, "name: a\nname: b\n");
    await expect(loadComputeEnvironment(path)).rejects.toMatchObject({ code: "CONFIG_SYNTAX" });
  });

  it("names the file in validation errors", async () => {
    const path = join(dir, "bad.yaml");
    await writeFile(
      path,
      "name: ok\nprovider: local\nregion: us-east-1\nworkDir: s3://bkt\nsnapshots:\n  interval: soon\n",
    );
    await expect(loadComputeEnvironment(path)).rejects.toMatchObject({
      code: "CONFIG_INVALID",
      message: expect.stringContaining(`Invalid ${path}`),
      problems: ['snapshots.interval: expected a duration such as "90s", "5m" or "1h" (got "soon")'],
    });
  });
});
