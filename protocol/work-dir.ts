import { createHash } from "node:crypto";

// A task id: names its snapshot area, control socket and events. The agent and the
// controller's registry both check ids against it.
export const TASK_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

// The stable task id of a work dir, for agents a scheduler starts without `--task`: the
// work dir's last path segment (Nextflow's task hash, readable in logs) and a hash of the
// whole URL (two work dirs that share a last segment never share an id). The same URL,
// with or without a trailing "/", always gives the same id.
export function taskIdFromWorkDir(workDir: string): string {
  const url = workDir.replace(/\/+$/, "");
  const last = url.slice(url.lastIndexOf("/") + 1);
  const readable = last
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .replace(/^[^A-Za-z0-9]+/, "")
    .slice(0, 48);
  const digest = createHash("sha256").update(url).digest("hex").slice(0, 12);
  return readable ? `${readable}-${digest}` : `w-${digest}`;
}

// The work dir of one task of a compute environment: its own folder under the
// environment's workDir, so that nothing a task writes (its cwd, logs, .exitcode and
// snapshots) collides with another task's.
export function taskWorkDir(environmentWorkDir: string, taskId: string): string {
  return `${environmentWorkDir.replace(/\/+$/, "")}/${taskId}`;
}
