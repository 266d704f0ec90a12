import { z } from "zod";
import { parseDuration } from "./duration.js";

// The compute environment schema. Field names are those of the YAML/JSON file; durations
// are written as strings ("90s", "5m") and come out of parsing as milliseconds in fields
// suffixed `Ms`. docs/compute-environment.md documents every field and default.

const DURATION_HINT = 'expected a duration such as "90s", "5m" or "1h"';

// A duration string of at least `minMs`, parsed to milliseconds.
function duration(minMs: number, minText: string) {
  return z
    .string({ error: DURATION_HINT })
    .refine((text) => parseDuration(text) !== undefined, { error: DURATION_HINT, abort: true })
    .refine((text) => (parseDuration(text) ?? 0) >= minMs, { error: `must be at least ${minText}` })
    .transform((text) => parseDuration(text) as number);
}

// A string matching `re`; `hint` is the message both for a non-string and a mismatch.
function pattern(re: RegExp, hint: string) {
  return z.string({ error: hint }).regex(re, { error: hint });
}

function integer(min: number, max: number) {
  return z
    .number({ error: `expected an integer from ${min} to ${max}` })
    .int({ error: `expected an integer from ${min} to ${max}` })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` });
}

function uniqueList<T extends z.ZodType>(item: T, what: string) {
  return z
    .array(item, { error: `expected a list of ${what}` })
    .min(1, { error: `needs at least one ${what.replace(/s$/, "")}` })
    .refine((list) => new Set(list).size === list.length, {
      error: `lists the same ${what.replace(/s$/, "")} twice`,
    });
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
// s3://bucket[/prefix]: bucket names follow the S3 rules (3-63 chars, lowercase, digits, dots, dashes).
const S3_URL = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\s]*)?$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;

export const snapshotSettingsSchema = z
  .strictObject({
    enabled: z.boolean({ error: "expected true or false" }).default(false),
    interval: duration(10_000, "10s").default(5 * 60_000),
    incremental: z.enum(["auto", "on", "off"], { error: 'expected "auto", "on" or "off"' }).default("auto"),
    tcpMode: z
      .enum(["close", "established"], { error: 'expected "close" or "established"' })
      .default("close"),
    compressionLevel: integer(1, 19).default(3),
    maxSpotAttempts: integer(0, 100).default(5),
    onDemandAfter: integer(1, 100).nullable().default(3),
  })
  .superRefine((s, ctx) => {
    if (s.onDemandAfter !== null && s.maxSpotAttempts > 0 && s.onDemandAfter > s.maxSpotAttempts) {
      ctx.addIssue({
        code: "custom",
        path: ["onDemandAfter"],
        input: s.onDemandAfter,
        message: `must not exceed maxSpotAttempts (${s.maxSpotAttempts}), or on-demand would never be used; use null to never switch`,
      });
    }
  })
  .transform(({ interval, ...rest }) => ({ ...rest, intervalMs: interval }));

export const agentSettingsSchema = z
  .strictObject({
    imdsPollInterval: duration(100, "100ms").default(2_000),
    // Tests shorten the 120 s spot notice; null means "use the deadline IMDS announces".
    noticeWindow: duration(1_000, "1s").nullable().default(null),
    keepGenerations: integer(1, 100).default(2),
  })
  .transform(({ imdsPollInterval, noticeWindow, ...rest }) => ({
    ...rest,
    imdsPollIntervalMs: imdsPollInterval,
    noticeWindowMs: noticeWindow,
  }));

const TAG_KEY = z
  .string({ error: "tag keys must be strings" })
  .min(1, { error: "tag keys cannot be empty" })
  .max(128, { error: "tag keys are at most 128 characters" })
  .refine((key) => !key.toLowerCase().startsWith("aws:"), { error: 'the "aws:" prefix is reserved by AWS' })
  .refine((key) => !key.startsWith("snapctl:"), {
    error: 'the "snapctl:" prefix is reserved for the controller',
  });

export const launchTemplateSchema = z
  .strictObject({
    id: pattern(/^lt-[0-9a-f]{8,17}$/, 'expected a launch template id "lt-..."').optional(),
    name: z.string({ error: "expected a launch template name" }).min(3).max(128).optional(),
    version: pattern(/^(\d+|\$Latest|\$Default)$/, 'expected a number, "$Latest" or "$Default"').default(
      "$Default",
    ),
  })
  .superRefine((lt, ctx) => {
    if ((lt.id === undefined) === (lt.name === undefined)) {
      ctx.addIssue({ code: "custom", path: [], input: lt, message: "set exactly one of id or name" });
    }
  });

export const ec2SettingsSchema = z
  .strictObject({
    ami: pattern(/^ami-[0-9a-f]{8,17}$/, 'expected an AMI id "ami-..."').optional(),
    launchTemplate: launchTemplateSchema.optional(),
    subnets: uniqueList(pattern(/^subnet-[0-9a-f]{8,17}$/, 'expected a subnet id "subnet-..."'), "subnets"),
    securityGroups: z
      .array(pattern(/^sg-[0-9a-f]{8,17}$/, 'expected a security group id "sg-..."'))
      .default([]),
    instanceProfile: z
      .string()
      .regex(/^(arn:aws[a-z-]*:iam::\d{12}:instance-profile\/[\w+=,.@/-]+|[\w+=,.@-]{1,128})$/, {
        error: "expected an instance profile name or ARN",
      })
      .optional(),
    keyName: z.string({ error: "expected a key pair name" }).min(1).max(255).optional(),
    tags: z
      .record(
        TAG_KEY,
        z
          .string({ error: "tag values must be strings" })
          .max(256, { error: "tag values are at most 256 characters" }),
      )
      .default({}),
  })
  .superRefine((ec2, ctx) => {
    if ((ec2.ami === undefined) === (ec2.launchTemplate === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [],
        input: { ami: ec2.ami, launchTemplate: ec2.launchTemplate },
        message: "set exactly one of ami or launchTemplate",
      });
    }
    if (ec2.ami !== undefined && ec2.instanceProfile === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["instanceProfile"],
        input: undefined,
        message: "required with ami: the agent needs S3 credentials (a launch template may carry its own)",
      });
    }
  });

export const localSettingsSchema = z.strictObject({
  // Where each emulated instance gets its cache directory and mount point.
  baseDir: z.string({ error: "expected a directory path" }).min(1, { error: "cannot be empty" }).optional(),
  zones: uniqueList(pattern(/^[a-z0-9-]+$/, "expected a zone name such as local-1a"), "zones").default([
    "local-1a",
    "local-1b",
  ]),
  arch: z.enum(["x86_64", "arm64"], { error: 'expected "x86_64" or "arm64"' }).optional(),
});

const common = {
  name: z.string({ error: "required: a name of 1-64 letters, digits, - or _" }).regex(NAME, {
    error: "expected 1-64 letters, digits, - or _, starting with a letter or digit",
  }),
  region: z.string({ error: "required: an AWS region such as us-east-1" }).regex(REGION, {
    error: "expected an AWS region such as us-east-1",
  }),
  workDir: z.string({ error: "required: an s3://bucket/prefix URL" }).regex(S3_URL, {
    error: "expected an s3://bucket/prefix URL with a valid bucket name",
  }),
  market: z.enum(["spot", "on-demand"], { error: 'expected "spot" or "on-demand"' }).default("spot"),
  snapshots: snapshotSettingsSchema.default(snapshotSettingsSchema.parse({})),
  agent: agentSettingsSchema.default(agentSettingsSchema.parse({})),
};

const instanceTypes = uniqueList(
  z
    .string({ error: "expected an EC2 instance type such as m5.large" })
    .regex(INSTANCE_TYPE, { error: "expected an EC2 instance type such as m5.large" }),
  "instance types",
);

export const ec2ComputeEnvironmentSchema = z.strictObject({
  ...common,
  provider: z.literal("ec2"),
  instanceTypes,
  ec2: ec2SettingsSchema,
});

export const localComputeEnvironmentSchema = z.strictObject({
  ...common,
  provider: z.literal("local"),
  // On the local provider the type is only the label the IMDS emulator reports.
  instanceTypes: instanceTypes.default(["m5.large"]),
  local: localSettingsSchema.default(localSettingsSchema.parse({})),
});

export const computeEnvironmentSchema = z.discriminatedUnion(
  "provider",
  [ec2ComputeEnvironmentSchema, localComputeEnvironmentSchema],
  { error: 'expected "ec2" or "local"' },
);

export type ComputeEnvironment = z.output<typeof computeEnvironmentSchema>;
export type Ec2ComputeEnvironment = z.output<typeof ec2ComputeEnvironmentSchema>;
export type LocalComputeEnvironment = z.output<typeof localComputeEnvironmentSchema>;
export type ComputeEnvironmentInput = z.input<typeof computeEnvironmentSchema>;
export type SnapshotSettings = ComputeEnvironment["snapshots"];
export type AgentSettings = ComputeEnvironment["agent"];
export type Ec2Settings = Ec2ComputeEnvironment["ec2"];
export type LocalSettings = LocalComputeEnvironment["local"];
