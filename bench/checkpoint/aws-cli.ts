import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BenchEndpoint } from "../harness/context.js";
import { run } from "../harness/tools.js";

// Runs `aws s3 ...` against the benchmark endpoint with the CLI's default transfer
// settings (what a user gets), path-style addressing, and a private config file.
export async function awsS3(
  args: string[],
  endpoint: BenchEndpoint,
  options: { configDir: string; signal?: AbortSignal },
): Promise<void> {
  const config = join(options.configDir, "aws-config");
  await writeFile(config, `[default]\nregion = ${endpoint.region}\ns3 =\n    addressing_style = path\n`);
  const { AWS_CA_BUNDLE: _bundle, ...inherited } = process.env;
  await run("aws", ["s3", ...args, "--endpoint-url", endpoint.url, "--only-show-errors"], {
    signal: options.signal,
    env: {
      ...(inherited as Record<string, string>),
      AWS_CONFIG_FILE: config,
      AWS_SHARED_CREDENTIALS_FILE: join(options.configDir, "no-credentials"),
      AWS_ACCESS_KEY_ID: endpoint.accessKeyId,
      AWS_SECRET_ACCESS_KEY: endpoint.secretAccessKey,
      AWS_CA_BUNDLE: "",
    },
  });
}
