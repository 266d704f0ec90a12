// The agent's control protocol: one JSON request per line on the agent's Unix socket, one
// JSON response line per request. Works without Redis or network: `snapctl checkpoint`
// runs on the same machine (or container) as the agent.
export type ControlRequest = { command: "checkpoint" } | { command: "status" };

export type ControlResponse =
  | { ok: true; result: Record<string, unknown> }
  | { ok: false; error: { code: string; message: string } };
