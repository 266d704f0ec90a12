import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { type Logger, silentLogger } from "../../common/log.js";
import { AgentError } from "../errors.js";
import { ImdsClient, type ImdsClientOptions } from "./imds-client.js";

// A spot interruption notice: what AWS will do to the instance, and when.
export interface SpotNotice {
  action: string;
  // When the instance is reclaimed (ms since the epoch), from the notice's `time`.
  deadline: number;
  // When this agent first saw it (ms since the epoch).
  seenAt: number;
}

// An EC2 rebalance recommendation: the instance is at elevated risk of interruption.
export interface RebalanceRecommendation {
  noticeTime: number;
  seenAt: number;
}

export interface ImdsWatcherOptions extends ImdsClientOptions {
  // How often to ask IMDS. Default 2000 ms.
  pollIntervalMs?: number;
  // Longest wait between polls while IMDS fails (the wait doubles per failure). Default 30 s.
  maxBackoffMs?: number;
  // A client to use instead of building one from the options above.
  client?: ImdsClient;
  logger?: Logger;
}

export interface ImdsWatcherEvents {
  notice: [SpotNotice];
  rebalance: [RebalanceRecommendation];
  // A poll failed; polling goes on with backoff. `failures` counts consecutive failures.
  unreachable: [{ error: AgentError; failures: number }];
}

const INSTANCE_ACTION = "/latest/meta-data/spot/instance-action";
const REBALANCE = "/latest/meta-data/events/recommendations/rebalance";

// Polls IMDS for spot interruption notices and rebalance recommendations, emitting each
// once (again only if it changes). A 404 means "none"; errors are tolerated with backoff.
export class ImdsWatcher extends EventEmitter<ImdsWatcherEvents> {
  readonly client: ImdsClient;
  private readonly pollIntervalMs: number;
  private readonly maxBackoffMs: number;
  private readonly logger: Logger;
  private readonly stop = new AbortController();
  private loop: Promise<void> | undefined;
  private lastNotice: string | undefined;
  private lastRebalance: string | undefined;

  constructor(options: ImdsWatcherOptions = {}) {
    super();
    this.client = options.client ?? new ImdsClient(options);
    this.pollIntervalMs = options.pollIntervalMs ?? 2000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.logger = options.logger ?? silentLogger;
    if (!(this.pollIntervalMs > 0))
      throw new AgentError("AGENT_INVALID_OPTION", `pollIntervalMs=${this.pollIntervalMs} must be > 0`);
  }

  // Starts polling (idempotent); close() stops it.
  start(): void {
    this.loop ??= this.run();
  }

  // Stops polling and waits for the poll in flight (bounded by the request timeout).
  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }

  // One poll of both paths; emits what is new. Throws AGENT_IMDS_FAILED when IMDS fails.
  async pollOnce(options: { signal?: AbortSignal } = {}): Promise<void> {
    const action = await this.client.get(INSTANCE_ACTION, options);
    if (action !== undefined && action !== this.lastNotice) {
      const notice = parseNotice(action);
      this.lastNotice = action;
      this.logger.warn({ notice }, "spot interruption notice");
      this.emit("notice", notice);
    }
    const rebalance = await this.client.get(REBALANCE, options);
    if (rebalance !== undefined && rebalance !== this.lastRebalance) {
      this.lastRebalance = rebalance;
      const parsed = parseJson(rebalance, REBALANCE) as { noticeTime?: string };
      const recommendation = {
        noticeTime: Date.parse(parsed.noticeTime ?? "") || Date.now(),
        seenAt: Date.now(),
      };
      this.logger.info({ recommendation }, "rebalance recommendation");
      this.emit("rebalance", recommendation);
    }
  }

  private async run(): Promise<void> {
    const signal = this.stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.pollOnce({ signal });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        const error =
          err instanceof AgentError
            ? err
            : new AgentError("AGENT_IMDS_FAILED", `IMDS poll failed: ${(err as Error).message}`, {
                cause: err,
              });
        // Off EC2 (local runs) IMDS may never answer: say so once, then now and then.
        const level = failures === 1 || failures % 30 === 0 ? "warn" : "debug";
        this.logger[level]({ err: error, failures }, "IMDS poll failed; retrying with backoff");
        this.emit("unreachable", { error, failures });
      }
      const wait = Math.min(this.maxBackoffMs, this.pollIntervalMs * 2 ** Math.min(failures, 16));
      await sleep(wait, undefined, { signal }).catch(() => {});
    }
  }
}

// AWS's instance-action JSON: {"action": "terminate", "time": "2017-09-18T08:22:00Z"}.
export function parseNotice(body: string, seenAt = Date.now()): SpotNotice {
  const parsed = parseJson(body, INSTANCE_ACTION) as { action?: unknown; time?: unknown };
  const deadline = typeof parsed.time === "string" ? Date.parse(parsed.time) : Number.NaN;
  if (typeof parsed.action !== "string" || Number.isNaN(deadline)) {
    throw new AgentError(
      "AGENT_IMDS_FAILED",
      `IMDS ${INSTANCE_ACTION} returned an unexpected body: ${body.slice(0, 200)}`,
    );
  }
  return { action: parsed.action, deadline, seenAt };
}

function parseJson(body: string, path: string): unknown {
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new AgentError("AGENT_IMDS_FAILED", `IMDS ${path} returned non-JSON: ${body.slice(0, 200)}`, {
      cause: err,
    });
  }
}
