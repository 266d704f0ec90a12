import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCloud } from "../../cloud/index.js";
import { snapctl } from "../helpers/snapctl.js";

describe("snapctl doctor", () => {
  let cloud: LocalCloud;
  let home: string;

  beforeAll(async () => {
    cloud = await LocalCloud.start();
    home = await mkdtemp(join(tmpdir(), "snap-home-"));
  });

  afterAll(async () => {
    await cloud?.close();
    await rm(home, { recursive: true, force: true });
  });

  it("exits 0 on a healthy environment and names every piece", async () => {
    const result = await snapctl(["doctor"], { env: { ...cloud.env(), SNAPCTL_HOME: home } });
    expect(result.stdout).toContain("all checks passed");
    for (const piece of ["CRIU bundle", "CRIU features", "FUSE", "S3", "Redis", "IMDS"]) {
      expect(result.stdout).toMatch(new RegExp(`^ok\\s+${piece}`, "m"));
    }
    expect(result.exitCode).toBe(0);
  });

  it("exits non-zero naming Redis, with a fix, when Redis is stopped", async () => {
    await cloud.redis.stop();
    const result = await snapctl(["doctor", "--json"], { env: { ...cloud.env(), SNAPCTL_HOME: home } });
    expect(result.exitCode).not.toBe(0);
    const report = JSON.parse(result.stdout) as {
      ok: boolean;
      checks: Array<{ name: string; ok: boolean; fix?: string }>;
    };
    expect(report.ok).toBe(false);
    const failed = report.checks.filter((c) => !c.ok);
    expect(failed.map((c) => c.name)).toEqual(["Redis"]);
    expect(failed[0]!.fix).toMatch(/snapctl local up|SNAPCTL_REDIS_URL/);
    await cloud.redis.start();
  });
});
