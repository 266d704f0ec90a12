import type { Redis } from "ioredis";
import type { TaskState } from "./states.js";
import type { Arch, Market } from "./task-record.js";

// Options and results of TaskRegistry's methods.

export interface TaskRegistryOptions {
  // An ioredis connection (the caller keeps ownership) or a redis:// URL (the registry
  // opens the connection and close() quits it).
  redis: Redis | string;
  // Prefix of every key. Default "snapctl:". Tests use one per test for isolation.
  prefix?: string;
  // Clock for recorded times. Default Date.now.
  now?: () => number;
}

export interface OperationOptions {
  // Checked before the command is sent; a command in flight is not cancelled (it is one
  // atomic step and either happens entirely or not at all).
  signal?: AbortSignal;
}

export interface CreateTaskInput {
  // Default: "t-" and 12 random hex digits.
  id?: string;
  // Default: the id.
  name?: string;
  command: string[];
  computeEnv: string;
}

export interface TransitionOptions extends OperationOptions {
  // Expected current state(s): compare-and-set. A task in another state that could make
  // this move is a REGISTRY_STATE_CONFLICT; one that cannot is REGISTRY_ILLEGAL_TRANSITION.
  from?: TaskState | readonly TaskState[];
  reason?: string;
  // Restore lease token; required to enter "restoring", checked whenever given.
  fencingToken?: number;
  at?: number;
}

export interface TransitionResult {
  from: TaskState;
  to: TaskState;
  version: number;
}

export interface TransitionEntry {
  // null for the creation entry.
  from: TaskState | null;
  to: TaskState;
  at: number;
  reason: string;
  eventId?: string;
}

export type EventOutcome =
  // Applied (with or without a state change).
  | "applied"
  // Seen before (same event id): nothing changed.
  | "duplicate"
  // Late or out of place (from an instance the task left, or for a state that does not
  // take it, or for an unknown task): dropped, nothing changed.
  | "ignored"
  // From an instance not recorded yet (its launch is being recorded): retry it later.
  | "deferred";

export interface EventResult {
  outcome: EventOutcome;
  // The task's state after the event (undefined for an unknown task).
  state?: TaskState;
  from?: TaskState;
  detail?: string;
}

export interface LaunchRecord extends OperationOptions {
  fencingToken: number;
  instanceId: string;
  zone: string;
  arch: Arch;
  instanceType: string;
  market: Market;
  at?: number;
}

export interface ListOptions extends OperationOptions {
  offset?: number;
  // At most 1000; default 100. Bounds the memory of one call.
  limit?: number;
}
