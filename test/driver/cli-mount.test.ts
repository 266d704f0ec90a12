import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSize } from "../../cli/commands/mount.js";
import { S3Server } from "../../cloud/index.js";
import { nodeEntry } from "../../common/entry.js";
import { DriverErrorCodes } from "../../driver/index.js";
import { BUCKET } from "./helpers/fusion-harness.js";

describe("snapctl mount", () => {
  let dir: string;
  let server: S3Server;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fusion-cli-"));
    server = new S3Server({ directory: join(dir, "s3"), buckets: [BUCKET] });
    await server.start();
  });
  afterAll(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("mounts in the foreground, prints one line when ready, and unmounts on SIGTERM", async () => {
    const mnt = join(dir, "mnt");
    const { command, args } = nodeEntry("test/driver/helpers/cli-mount-child");
    const child = spawn(
      command,
      [
        ...args,
        mnt,
        "--bucket",
        BUCKET,
        "--endpoint",
        server.endpoint,
        "--force-path-style",
        "--cache-size",
        "64M",
      ],
      {
        env: {
          ...process.env,
          AWS_REGION: "us-east-1",
          AWS_ACCESS_KEY_ID: "S3RVER",
          AWS_SECRET_ACCESS_KEY: "S3RVER",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      const [line] = (await Promise.race([
        once(createInterface({ input: child.stdout }), "line"),
        once(child, "exit").then(() => {
          throw new Error(`exited: ${stderr}`);
        }),
      ])) as [string];
      expect(JSON.parse(line)).toEqual({ mounted: mnt });
      const { stdout } = await execa("bash", [
        "-c",
        `echo via-cli > ${mnt}/s3/${BUCKET}/cli.txt && cat ${mnt}/s3/${BUCKET}/cli.txt`,
      ]);
      expect(stdout).toBe("via-cli");
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = (await exited) as [number];
      expect(code).toBe(0);
      expect(await readFile("/proc/mounts", "utf8")).not.toContain(mnt);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await execa("fusermount", ["-u", "-z", mnt], { reject: false });
    }
  });

  it("parses sizes", () => {
    expect(parseSize("8M")).toBe(8 * 2 ** 20);
    expect(parseSize("10GiB")).toBe(10 * 2 ** 30);
    expect(parseSize("4096")).toBe(4096);
    expect(() => parseSize("lots")).toThrow(/not a size/);
  });
});

describe("docs/driver.md", () => {
  it("documents every DriverError code and every option", async () => {
    const doc = await readFile(join(import.meta.dirname, "../../docs/driver.md"), "utf8");
    for (const code of DriverErrorCodes) expect(doc, code).toContain(`\`${code}\``);
    const { DEFAULT_FUSION_OPTIONS } = await import("../../driver/index.js");
    for (const name of Object.keys(DEFAULT_FUSION_OPTIONS)) expect(doc, name).toContain(`\`${name}\``);
  });
});
