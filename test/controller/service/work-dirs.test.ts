// Tasks of one compute environment each get their own work dir (<workDir>/<task-id>/):
// two real tasks (the real controller, local provider, agents, CRIU and FUSE on s3rver)
// running at once keep separate output, exit codes and snapshots.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsCommand, S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LocalCloud } from "../../../cloud/index.js";
import { nodeEntry } from "../../../common/entry.js";
import { ControllerClient, ControllerService } from "../../../controller/index.js";

let dir = "";
let cloud: LocalCloud;
let service: ControllerService;
let client: ControllerClient;
let s3: S3Client;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "snapctl-workdirs-"));
  cloud = await LocalCloud.start({ directory: join(dir, "cloud"), buckets: ["snapctl-test"] });
  const agentEnv = cloud.env();
  delete agentEnv.AWS_EC2_METADATA_SERVICE_ENDPOINT;
  service = new ControllerService({
    redisUrl: cloud.redis.url,
    stateDir: join(dir, "controller"),
    sweepIntervalMs: 500,
    local: { env: agentEnv },
  });
  await service.ready();
  client = new ControllerClient({ redisUrl: cloud.redis.url });
  s3 = new S3Client({
    endpoint: cloud.s3.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  });
});

afterAll(async () => {
  s3?.destroy();
  await client?.close();
  await service?.close();
  await cloud?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function text(key: string): Promise<string | undefined> {
  try {
    const r = await s3.send(new GetObjectCommand({ Bucket: "snapctl-test", Key: key }));
    return await r.Body?.transformToString("utf8");
  } catch {
    return undefined;
  }
}

it("two tasks running at once in one compute environment keep separate output, exit codes and snapshots", async () => {
  const envFile = join(dir, "env.yaml");
  await writeFile(
    envFile,
    [
      "name: two",
      "provider: local",
      "region: us-east-1",
      "workDir: s3://snapctl-test/work",
      "snapshots:",
      "  enabled: true",
      "  interval: 10s",
      "",
    ].join("\n"),
  );
  // Both write the same file names in their cwd, for long enough to be checkpointed.
  const script = (name: string, code: number) =>
    `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do echo "${name} $i"; echo "${name}" > result; sleep 0.2; done; exit ${code}`;
  const a = await client.submit({ command: ["sh", "-c", script("alpha", 0)], computeEnvFile: envFile });
  const b = await client.submit({ command: ["sh", "-c", script("beta", 3)], computeEnvFile: envFile });
  const [doneA, doneB] = await Promise.all([
    client.wait(a.id, { pollMs: 200 }),
    client.wait(b.id, { pollMs: 200 }),
  ]);
  expect(doneA.state).toBe("succeeded");
  expect(doneB.state).toBe("failed");
  expect(doneB.exitCode).toBe(3);
  const lines = (name: string) => Array.from({ length: 15 }, (_, i) => `${name} ${i + 1}\n`).join("");
  expect(await text(`work/${a.id}/.command.out`)).toBe(lines("alpha"));
  expect(await text(`work/${b.id}/.command.out`)).toBe(lines("beta"));
  expect(await text(`work/${a.id}/result`)).toBe("alpha\n");
  expect(await text(`work/${b.id}/result`)).toBe("beta\n");
  expect(await text(`work/${a.id}/.exitcode`)).toBe("0\n");
  expect(await text(`work/${b.id}/.exitcode`)).toBe("3\n");
  // Nothing of either task (output, snapshots, logs) is written at the environment's root.
  const root = await s3.send(
    new ListObjectsCommand({ Bucket: "snapctl-test", Prefix: "work/", Delimiter: "/" }),
  );
  // (The folder's own marker, made by the agent's mkdir -p through the mount, aside.)
  expect((root.Contents ?? []).map((o) => o.Key).filter((k) => k !== "work/")).toEqual([]);
  expect((root.CommonPrefixes ?? []).map((p) => p.Prefix).sort()).toEqual(
    [`work/${a.id}/`, `work/${b.id}/`].sort(),
  );
}, 180_000);

it("snapctl run --wait --logs streams the task's output; snapctl logs prints it by task id or work dir URL, stderr and the agent's log too", async () => {
  const envFile = join(dir, "env-logs.yaml");
  await writeFile(
    envFile,
    ["name: logs", "provider: local", "region: us-east-1", "workDir: s3://snapctl-test/logs", ""].join("\n"),
  );
  const { command, args } = nodeEntry("cli/snapctl");
  const env = { ...cloud.env(), SNAPCTL_LOCAL_CLOUD: "0", SNAPCTL_HOME: join(dir, "cli-home") };
  const snapctl = (...argv: string[]) =>
    execa(command, [...args, ...argv], { env, reject: false, timeout: 120_000 });
  const script = "for i in 1 2 3 4 5 6 7 8; do echo out $i; echo err $i >&2; sleep 0.2; done";
  const run = await snapctl("run", "--compute-env", envFile, "--wait", "--logs", "--", "sh", "-c", script);
  expect(run.exitCode, run.stderr).toBe(0);
  const [id, ...output] = run.stdout.split("\n");
  const out = Array.from({ length: 8 }, (_, i) => `out ${i + 1}`);
  const err = Array.from({ length: 8 }, (_, i) => `err ${i + 1}`);
  expect(output.filter(Boolean)).toEqual(out);
  expect((await snapctl("logs", id as string)).stdout).toBe(`${out.join("\n")}`);
  expect((await snapctl("logs", id as string, "--stderr")).stdout).toBe(`${err.join("\n")}`);
  const byUrl = await snapctl("logs", `s3://snapctl-test/logs/${id}`, "--follow");
  expect(byUrl.exitCode, byUrl.stderr).toBe(0);
  expect(byUrl.stdout).toBe(`${out.join("\n")}`);
  // The agent uploads its log as its last step, after the task's end was reported.
  let agent = await snapctl("logs", id as string, "--agent");
  for (let i = 0; i < 100 && !agent.stdout; i++) {
    await new Promise((r) => setTimeout(r, 200));
    agent = await snapctl("logs", id as string, "--agent");
  }
  expect(agent.stdout).toMatch(/^==> \d{8}T\d{9}Z-i-local[0-9a-f]+ <==$/m);
  expect(agent.stdout).toContain('"msg":"task started"');
  const unknown = await snapctl("logs", "t-nope");
  expect(unknown.exitCode).toBe(1);
  expect(unknown.stderr).toContain("t-nope");
}, 180_000);
