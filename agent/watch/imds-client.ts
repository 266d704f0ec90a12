import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { AgentError } from "../errors.js";

export interface ImdsClientOptions {
  // IMDS endpoint. Default: AWS_EC2_METADATA_SERVICE_ENDPOINT, the AWS config file, else
  // http://169.254.169.254 (the SDK's own resolution).
  endpoint?: string;
  // Bound of one HTTP request, in ms. Default 1000 (IMDS answers in microseconds).
  timeoutMs?: number;
  // Token lifetime asked for, in seconds. Default 21600 (the maximum).
  tokenTtlSeconds?: number;
  // Clock for the token's lifetime. Default Date.now.
  now?: () => number;
}

// IMDSv2 through @aws-sdk/ec2-metadata-service, with the session token kept until it
// expires or is refused: the SDK's own request() asks for a new token every time, and
// retries with seconds of backoff; the watcher wants one quick attempt per poll instead.
export class ImdsClient {
  private readonly tokens: MetadataService;
  private readonly reads: MetadataService;
  private token: { value: string; expiresAt: number } | undefined;
  private readonly ttl: number;
  private readonly now: () => number;

  constructor(options: ImdsClientOptions = {}) {
    this.ttl = options.tokenTtlSeconds ?? 21600;
    this.now = options.now ?? Date.now;
    const common = {
      endpoint: options.endpoint,
      httpOptions: { timeout: options.timeoutMs ?? 1000 },
      retries: 0,
      tokenTtl: this.ttl,
    };
    this.tokens = new MetadataService(common);
    // Reads carry the token we pass; IMDSv1 must not be "disabled" for the SDK to allow that.
    this.reads = new MetadataService({ ...common, disableFetchToken: true, ec2MetadataV1Disabled: false });
  }

  // GETs a metadata path (e.g. "/latest/meta-data/instance-id"); undefined on 404.
  async get(path: string, options: { signal?: AbortSignal } = {}): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      options.signal?.throwIfAborted();
      const token = await this.session();
      try {
        return await this.reads.request(path, { headers: { "x-aws-ec2-metadata-token": token } });
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) return undefined;
        // An expired or revoked token: take a new one once.
        if (status === 401 && attempt === 0) {
          this.token = undefined;
          continue;
        }
        throw new AgentError("AGENT_IMDS_FAILED", `IMDS request ${path} failed: ${(err as Error).message}`, {
          cause: err,
          retryable: true,
        });
      }
    }
  }

  private async session(): Promise<string> {
    // Renewed early (a minute, or half its life) so it never expires between check and use;
    // a 401 still renews it, should the clocks disagree.
    const early = Math.min(60_000, (this.ttl * 1000) / 2);
    if (this.token && this.token.expiresAt - early > this.now()) return this.token.value;
    try {
      const value = await this.tokens.fetchMetadataToken();
      this.token = { value, expiresAt: this.now() + this.ttl * 1000 };
      return value;
    } catch (err) {
      throw new AgentError(
        "AGENT_IMDS_FAILED",
        `IMDS session token request failed: ${(err as Error).message}`,
        {
          cause: err,
          retryable: true,
        },
      );
    }
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}
