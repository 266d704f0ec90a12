import { ProviderError } from "../errors.js";

// EC2 error codes after which the same request may work with another instance type or
// in another subnet/zone: the loop moves on to its next candidate.
const NEXT_CANDIDATE = new Set([
  "InsufficientInstanceCapacity",
  "InsufficientHostCapacity",
  "InsufficientCapacity",
  "SpotMaxPriceTooLow",
  "Unsupported",
  "InsufficientFreeAddressesInSubnet",
]);

// Account or API-wide conditions worth retrying later, but not with another candidate now.
const RETRY_LATER = new Set([
  "RequestLimitExceeded",
  "Throttling",
  "ThrottlingException",
  "MaxSpotInstanceCountExceeded",
  "VcpuLimitExceeded",
  "InstanceLimitExceeded",
  "ServiceUnavailable",
  "InternalError",
  "Unavailable",
]);

// The EC2 error code of an SDK error (EC2's query protocol puts it in `name`).
export function ec2ErrorCode(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string };
  return e?.Code ?? e?.code ?? e?.name ?? "Unknown";
}

export function isCapacityError(err: unknown): boolean {
  return NEXT_CANDIDATE.has(ec2ErrorCode(err));
}

export function isAbort(err: unknown): boolean {
  return (err as Error)?.name === "AbortError";
}

// Wraps an EC2 failure, marking as retryable what may work later.
export function providerError(
  code: "PROVIDER_LAUNCH_FAILED" | "PROVIDER_TERMINATE_FAILED" | "PROVIDER_DESCRIBE_FAILED",
  what: string,
  err: unknown,
): ProviderError {
  if (isAbort(err)) return new ProviderError("PROVIDER_ABORTED", `${what}: aborted`, { cause: err });
  const ec2Code = ec2ErrorCode(err);
  const fault = (err as { $fault?: string })?.$fault;
  const retryable = RETRY_LATER.has(ec2Code) || fault === "server" || isCapacityError(err);
  return new ProviderError(code, `${what}: ${ec2Code}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    retryable,
  });
}
