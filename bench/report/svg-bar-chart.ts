// A small horizontal grouped bar chart as standalone SVG: one group per label, one bar per
// series, the median as the bar and the min-max range as a whisker.
export interface Bar {
  series: string;
  value: number;
  min?: number;
  max?: number;
}

export interface BarChart {
  title: string;
  unit: string;
  series: string[];
  groups: Array<{ label: string; bars: Bar[] }>;
}

const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"];
const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function renderBarChart(chart: BarChart): string {
  const width = 760;
  const labelWidth = 190;
  const plotWidth = width - labelWidth - 90;
  const barHeight = 14;
  const groupGap = 12;
  const top = 48;
  const groupHeight = chart.series.length * barHeight + groupGap;
  const height = top + chart.groups.length * groupHeight + 16;
  const finite = chart.groups
    .flatMap((g) => g.bars.flatMap((b) => [b.value, b.max ?? b.value]))
    .filter(Number.isFinite);
  const scaleMax = Math.max(...finite, 1e-9) * 1.05;
  const x = (value: number) => labelWidth + (Math.max(0, value) / scaleMax) * plotWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="18" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  chart.series.forEach((series, i) => {
    const lx = labelWidth + i * 130;
    parts.push(`<rect x="${lx}" y="28" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 14}" y="37">${escapeXml(series)}</text>`);
  });
  parts.push(`<text x="${width - 8}" y="37" text-anchor="end" fill="#555">${escapeXml(chart.unit)}</text>`);
  chart.groups.forEach((group, g) => {
    const gy = top + g * groupHeight;
    const midY = gy + (chart.series.length * barHeight) / 2 + 4;
    parts.push(`<text x="${labelWidth - 8}" y="${midY}" text-anchor="end">${escapeXml(group.label)}</text>`);
    chart.series.forEach((series, i) => {
      const bar = group.bars.find((b) => b.series === series);
      const y = gy + i * barHeight;
      if (!bar || !Number.isFinite(bar.value)) {
        parts.push(`<text x="${labelWidth + 4}" y="${y + 11}" fill="#999">not measured</text>`);
        return;
      }
      const color = COLORS[i % COLORS.length];
      parts.push(
        `<rect x="${labelWidth}" y="${y + 1}" width="${(x(bar.value) - labelWidth).toFixed(1)}" height="${barHeight - 2}" fill="${color}"/>`,
      );
      if (
        bar.min !== undefined &&
        bar.max !== undefined &&
        Number.isFinite(bar.min) &&
        Number.isFinite(bar.max)
      ) {
        const cy = y + barHeight / 2;
        parts.push(
          `<line x1="${x(bar.min).toFixed(1)}" y1="${cy}" x2="${x(bar.max).toFixed(1)}" y2="${cy}" stroke="#222" stroke-width="1"/>`,
        );
      }
      parts.push(
        `<text x="${(x(Math.max(bar.value, bar.max ?? 0)) + 4).toFixed(1)}" y="${y + 11}">${formatValue(bar.value)}</text>`,
      );
    });
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
