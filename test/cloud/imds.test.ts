import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImdsEmulator } from "../../cloud/index.js";

describe("IMDS emulator through @aws-sdk/ec2-metadata-service", () => {
  const imds = new ImdsEmulator({ instanceId: "i-0123456789abcdef0", availabilityZone: "eu-west-1b" });
  let previous: string | undefined;

  beforeAll(async () => {
    await imds.start();
    // The SDK's standard endpoint setting, as a real deployment would override it.
    previous = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.endpoint;
  });

  afterAll(async () => {
    if (previous === undefined) delete process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
    else process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = previous;
    await imds.stop();
  });

  it("serves instance identity through the IMDSv2 token flow", async () => {
    const client = new MetadataService({});
    expect(await client.request("/latest/meta-data/instance-id", {})).toBe("i-0123456789abcdef0");
    expect(await client.request("/latest/meta-data/placement/availability-zone", {})).toBe("eu-west-1b");
    expect(await client.request("/latest/meta-data/instance-type", {})).toBe("m5.large");
  });

  it("refuses a metadata request without a token, and a token request without a TTL", async () => {
    const plain = await fetch(`${imds.endpoint}/latest/meta-data/instance-id`);
    expect(plain.status).toBe(401);
    const badToken = await fetch(`${imds.endpoint}/latest/meta-data/instance-id`, {
      headers: { "x-aws-ec2-metadata-token": "forged" },
    });
    expect(badToken.status).toBe(401);
    const noTtl = await fetch(`${imds.endpoint}/latest/api/token`, { method: "PUT" });
    expect(noTtl.status).toBe(400);
  });

  it("shows no interruption until one is scheduled, then AWS's instance-action JSON", async () => {
    const client = new MetadataService({ endpoint: imds.endpoint });
    await expect(client.request("/latest/meta-data/spot/instance-action", {})).rejects.toThrow();
    const before = Date.now();
    const res = await fetch(`${imds.endpoint}/_emulator/interrupt`, {
      method: "POST",
      body: JSON.stringify({ in: 90, action: "terminate" }),
    });
    expect(res.status).toBe(200);
    const notice = JSON.parse(await client.request("/latest/meta-data/spot/instance-action", {})) as {
      action: string;
      time: string;
    };
    expect(notice.action).toBe("terminate");
    expect(notice.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // AWS times have whole seconds: the deadline is 90 s after scheduling, to the second.
    const deadline = Date.parse(notice.time);
    expect(deadline).toBeGreaterThanOrEqual(Math.floor((before + 90_000) / 1000) * 1000);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 90_000);
    expect(await client.request("/latest/meta-data/spot/termination-time", {})).toBe(notice.time);
  });

  it("publishes a rebalance recommendation", async () => {
    const client = new MetadataService({ endpoint: imds.endpoint });
    await expect(client.request("/latest/meta-data/events/recommendations/rebalance", {})).rejects.toThrow();
    imds.scheduleRebalance();
    const body = JSON.parse(await client.request("/latest/meta-data/events/recommendations/rebalance", {}));
    expect(body.noticeTime).toMatch(/Z$/);
  });

  it("rejects a bad schedule with a message naming the value", async () => {
    const res = await fetch(`${imds.endpoint}/_emulator/interrupt`, {
      method: "POST",
      body: JSON.stringify({ action: "explode" }),
    });
    expect(res.status).toBe(400);
    expect((JSON.parse(await res.text()) as { error: string }).error).toContain('"explode"');
  });
});
