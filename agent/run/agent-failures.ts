import { AgentError } from "../errors.js";

// Any failure as an AgentError (an unexpected one as AGENT_INTERNAL, naming its code).
export function asAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = (err as Error)?.message ?? String(err);
  return new AgentError("AGENT_INTERNAL", typeof code === "string" ? `${message} [${code}]` : message, {
    cause: err,
  });
}

// Whether a failure may not repeat on the next attempt: an abort, or an error marked
// retryable (S3 unreachable) anywhere in its chain of causes.
export function isTransient(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if ((e as { retryable?: unknown }).retryable === true) return true;
    if (typeof code === "string" && code.endsWith("_ABORTED")) return true;
    if (e.name === "AbortError") return true;
  }
  return false;
}

// Whether an AWS SDK error with this name (its exception type) is in `err`'s chain.
export function hasErrorName(err: unknown, name: string): boolean {
  for (let e = err; e instanceof Error; e = e.cause) if (e.name === name) return true;
  return false;
}
