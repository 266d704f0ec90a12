import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { snapctl } from "../helpers/snapctl.js";

describe("snapctl local up / down", () => {
  let home: string | undefined;

  afterAll(async () => {
    if (home) {
      await snapctl(["local", "down"], { env: { SNAPCTL_HOME: home } });
      await rm(home, { recursive: true, force: true });
    }
  });

  it("starts the cloud in the background, prints its endpoints as JSON, and stops it", async () => {
    home = await mkdtemp(join(tmpdir(), "snap-home-"));
    const env = { SNAPCTL_HOME: home };
    const up = await snapctl(["local", "up", "--json"], { env });
    expect(up.exitCode).toBe(0);
    const endpoints = JSON.parse(up.stdout) as {
      s3: string;
      redis: string;
      imds: string;
      pid: number;
      started: boolean;
    };
    expect(endpoints.started).toBe(true);
    expect(endpoints.s3).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.redis).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.imds).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // A second `up` finds the running one; doctor uses it without any other configuration.
    const again = JSON.parse((await snapctl(["local", "up", "--json"], { env })).stdout) as {
      pid: number;
      started: boolean;
    };
    expect(again).toMatchObject({ pid: endpoints.pid, started: false });
    const doctor = await snapctl(["doctor"], { env });
    expect(doctor.stdout).toContain("all checks passed");

    const envOut = await snapctl(["local", "env"], { env });
    expect(envOut.stdout).toContain(`export AWS_ENDPOINT_URL_S3=${endpoints.s3}`);

    const down = await snapctl(["local", "down", "--json"], { env });
    expect(JSON.parse(down.stdout)).toEqual({ stopped: true, pid: endpoints.pid });
    expect(() => process.kill(endpoints.pid, 0)).toThrow();
    const status = await snapctl(["local", "status"], { env });
    expect(status.exitCode).toBe(1);
  });
});
