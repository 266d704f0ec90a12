// Redis key names. The braces are a hash tag: all keys of one task land in the same
// Cluster slot, as a multi-key script needs. (The task index is global, so creating a
// task still assumes a standalone Redis.)
export class RegistryKeys {
  constructor(readonly prefix: string) {}

  index(): string {
    return `${this.prefix}tasks`;
  }

  // Hash: the task record (see task-record.ts for the fields).
  task(id: string): string {
    return `${this.prefix}task:{${id}}`;
  }

  // Stream: one entry per transition (from, to, at, reason, eventId).
  transitions(id: string): string {
    return `${this.prefix}task:{${id}}:transitions`;
  }

  // Set: ids of the events applied to the task (one per event; bounded by the task's life).
  events(id: string): string {
    return `${this.prefix}task:{${id}}:events`;
  }

  // Set: every instance ever recorded for the task, to tell late events from early ones.
  instances(id: string): string {
    return `${this.prefix}task:{${id}}:instances`;
  }

  // String "<token>:<owner>" with a TTL: the restore lease.
  lease(id: string): string {
    return `${this.prefix}task:{${id}}:lease`;
  }

  // Counter: the last fencing token handed out. Never reset, so tokens only grow.
  fence(id: string): string {
    return `${this.prefix}task:{${id}}:fence`;
  }
}
