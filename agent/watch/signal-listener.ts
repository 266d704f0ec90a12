// Termination signals from the container runtime (docker stop, ECS, Kubernetes send
// SIGTERM, then SIGKILL after a grace period). Calls `onSignal` for each one received and
// keeps the default action (exit) away while listening. Returns the function that stops
// listening.
export function listenForSignals(
  onSignal: (signal: NodeJS.Signals) => void,
  options: { signals?: NodeJS.Signals[]; target?: NodeJS.EventEmitter } = {},
): () => void {
  const target = options.target ?? process;
  const signals = options.signals ?? ["SIGTERM", "SIGINT"];
  const handlers = signals.map((name) => {
    const handler = () => onSignal(name);
    target.on(name, handler);
    return [name, handler] as const;
  });
  return () => {
    for (const [name, handler] of handlers) target.off(name, handler);
  };
}
