const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

// Parses a duration such as "250ms", "90s", "5m", "1.5h" into milliseconds, or returns
// undefined when `text` is not one. Bare numbers are refused on purpose: "300" could be
// seconds or milliseconds, and a wrong guess would be silent.
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * (UNITS_MS[match[2] as string] as number);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

// Formats milliseconds back into the largest unit that divides it exactly ("5m", "90s").
export function formatDuration(ms: number): string {
  for (const unit of ["h", "m", "s"] as const) {
    const size = UNITS_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
