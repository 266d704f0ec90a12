import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3Server } from "../../cloud/index.js";
import { DriverError, mountFusion } from "../../driver/index.js";
import { BUCKET } from "./helpers/fusion-harness.js";

// The library as the agent uses it: mounted in this process. Only child processes (execa)
// touch the mount, never this process's own fs calls.
describe("mountFusion in-process", () => {
  let dir: string;
  let server: S3Server;
  let client: S3Client;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "fusion-api-"));
    server = new S3Server({ directory: join(dir, "s3"), buckets: [BUCKET] });
    await server.start();
    client = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
  });
  afterAll(async () => {
    client?.destroy();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("rejects invalid options with DRIVER_INVALID_OPTION", async () => {
    const err = await mountFusion({ mountpoint: join(dir, "bad"), client, uploadPartSize: 1024 }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).code).toBe("DRIVER_INVALID_OPTION");
    expect((err as Error).message).toMatch(/uploadPartSize=1024/);
  });

  it("mounts with an injected client, commits, and closes idempotently", async () => {
    const mnt = join(dir, "mnt");
    const mount = await mountFusion({ mountpoint: mnt, client, buckets: [BUCKET] });
    try {
      await execa("bash", ["-c", `printf 'in-process' > ${mnt}/s3/${BUCKET}/api.txt`]);
      const committed = await mount.commit();
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "api.txt" }));
      expect(committed).toEqual([{ bucket: BUCKET, key: "api.txt", size: 10, etag: head.ETag }]);
      expect(await mount.commit()).toEqual([]);
    } finally {
      await Promise.all([mount.close(), mount.close()]);
    }
    await mount.close();
    expect(await readFile("/proc/mounts", "utf8")).not.toContain(mnt);
    await expect(mount.commit()).rejects.toMatchObject({ code: "DRIVER_NOT_MOUNTED" });
  });
});
