// Hand-built SVG charts for docs/bench/: grouped bar charts and line charts,
// linear or logarithmic axes, with titles, axis labels, units, legends and
// value labels. No dependencies; the output is deterministic for given input.

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f"];
const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const r1 = (x: number): string => (Math.round(x * 10) / 10).toString();

/** A short number: 1234 -> "1.2k", 0.000012 -> "12µ" is not used; plain SI-ish for axes. */
export function shortNumber(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  const a = Math.abs(v);
  const trim = (x: number, d: number) =>
    x
      .toFixed(d)
      .replace(/\.0+$/, "")
      .replace(/(\.\d*?)0+$/, "$1");
  if (a >= 1e9) return `${trim(v / 1e9, a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${trim(v / 1e6, a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${trim(v / 1e3, a >= 1e4 ? 0 : 1)}k`;
  if (a >= 100 || a === 0 || Number.isInteger(v)) return trim(v, 0);
  if (a >= 10) return trim(v, 1);
  if (a >= 1) return trim(v, 1);
  if (a >= 0.01) return trim(v, 2);
  return v.toExponential(0);
}

interface Axis {
  min: number;
  max: number;
  log: boolean;
  ticks: number[];
}

function niceStep(range: number, count: number): number {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function makeAxis(values: number[], log: boolean, includeZero: boolean): Axis {
  const vs = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (vs.length === 0) return { min: log ? 1 : 0, max: log ? 10 : 1, log, ticks: log ? [1, 10] : [0, 1] };
  let lo = Math.min(...vs);
  let hi = Math.max(...vs);
  if (log) {
    const a = Math.floor(Math.log10(lo));
    const b = Math.max(a + 1, Math.ceil(Math.log10(hi)));
    const ticks: number[] = [];
    const decades = b - a;
    for (let e = a; e <= b; e++) {
      ticks.push(10 ** e);
      if (decades <= 2 && e < b) ticks.push(2 * 10 ** e, 5 * 10 ** e);
    }
    return { min: 10 ** a, max: 10 ** b, log, ticks: ticks.sort((x, y) => x - y) };
  }
  if (includeZero) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + 1;
  const step = niceStep(hi - lo, 5);
  const min = Math.floor(lo / step) * step;
  const max = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = min; t <= max + step / 2; t += step) ticks.push(Math.round(t / step) * step);
  return { min, max, log, ticks };
}

function scale(axis: Axis, v: number, from: number, to: number): number {
  if (axis.log) {
    const lv = Math.log10(Math.max(v, axis.min));
    return from + ((lv - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min))) * (to - from);
  }
  return from + ((v - axis.min) / (axis.max - axis.min)) * (to - from);
}

function header(width: number, height: number, title: string, subtitle: string | undefined): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${esc(title)}</text>`,
  ];
  if (subtitle) out.push(`<text x="${width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  return out;
}

function legend(names: string[], x: number, y: number, maxWidth: number): { svg: string[]; height: number } {
  const out: string[] = [];
  let cx = x;
  let cy = y;
  for (const [i, name] of names.entries()) {
    const w = 18 + name.length * 6.6 + 16;
    if (cx + w > x + maxWidth && cx > x) {
      cx = x;
      cy += 18;
    }
    out.push(`<rect x="${r1(cx)}" y="${r1(cy - 9)}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`);
    out.push(`<text x="${r1(cx + 17)}" y="${r1(cy + 1)}" fill="#222">${esc(name)}</text>`);
    cx += w;
  }
  return { svg: out, height: cy - y + 18 };
}

function yAxisSvg(axis: Axis, left: number, top: number, bottom: number, right: number, label: string, fmt: (v: number) => string): string[] {
  const out: string[] = [];
  for (const t of axis.ticks) {
    const y = scale(axis, t, bottom, top);
    out.push(`<line x1="${left}" x2="${right}" y1="${r1(y)}" y2="${r1(y)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${left - 6}" y="${r1(y + 4)}" text-anchor="end" fill="#444">${esc(fmt(t))}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#888"/>`);
  out.push(`<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#888"/>`);
  const mid = (top + bottom) / 2;
  out.push(`<text transform="translate(16 ${r1(mid)}) rotate(-90)" text-anchor="middle" fill="#222">${esc(label + (axis.log ? " (log scale)" : ""))}</text>`);
  return out;
}

export interface BarChartOptions {
  title: string;
  subtitle?: string;
  yLabel: string;
  categories: string[];
  series: Array<{ name: string; values: number[] }>;
  log?: boolean;
  /** Value labels on the bars. */
  format?: (v: number) => string;
  /** Tick labels of the value axis. */
  axisFormat?: (v: number) => string;
  width?: number;
  height?: number;
}

/** Grouped vertical bars: one group per category, one bar per series, value written above each bar. */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 420;
  const fmt = o.format ?? shortNumber;
  const log = o.log ?? false;
  const left = 78;
  const right = width - 20;
  const top = o.subtitle ? 62 : 48;
  const lg = legend(
    o.series.map((s) => s.name),
    left,
    0,
    right - left,
  );
  const showLegend = o.series.length > 1;
  const catLines = o.categories.map((c) => wrap(c, Math.max(8, Math.floor((right - left) / o.categories.length / 6.4))));
  const catHeight = Math.max(...catLines.map((l) => l.length)) * 13;
  const bottom = height - 30 - catHeight - (showLegend ? lg.height : 0);
  const axis = makeAxis(
    o.series.flatMap((s) => s.values),
    log,
    true,
  );
  const out = header(width, height, o.title, o.subtitle);
  out.push(...yAxisSvg(axis, left, top, bottom, right, o.yLabel, o.axisFormat ?? shortNumber));
  const groupW = (right - left) / o.categories.length;
  const barW = Math.min(56, (groupW * 0.78) / o.series.length);
  for (const [ci, cat] of o.categories.entries()) {
    const gx = left + ci * groupW + (groupW - barW * o.series.length) / 2;
    for (const [si, s] of o.series.entries()) {
      const v = s.values[ci];
      if (v === undefined || !Number.isFinite(v) || (log && v <= 0)) continue;
      const x = gx + si * barW;
      const y = scale(axis, v, bottom, top);
      const base = log ? bottom : scale(axis, 0, bottom, top);
      out.push(
        `<rect x="${r1(x + 1)}" y="${r1(Math.min(y, base))}" width="${r1(barW - 2)}" height="${r1(Math.abs(base - y))}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(`${s.name}, ${cat}: ${fmt(v)}`)}</title></rect>`,
      );
      out.push(`<text x="${r1(x + barW / 2)}" y="${r1(y - 4)}" text-anchor="middle" font-size="${barW < 30 ? 9 : 11}" fill="#222">${esc(fmt(v))}</text>`);
    }
    catLines[ci]?.forEach((line, li) => {
      out.push(`<text x="${r1(left + ci * groupW + groupW / 2)}" y="${r1(bottom + 16 + li * 13)}" text-anchor="middle" fill="#222">${esc(line)}</text>`);
    });
  }
  if (showLegend) {
    const l = legend(
      o.series.map((s) => s.name),
      left,
      height - lg.height - 2,
      right - left,
    );
    out.push(...l.svg);
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function wrap(text: string, width: number): string[] {
  const words = text.split(" ");
  const lines: string[] = [];
  let cur = "";
  for (const w of words) {
    if (cur && (cur + " " + w).length > width) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  return lines;
}

export interface LineChartOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Array<{ name: string; points: Array<[number, number]>; dashed?: boolean }>;
  xLog?: boolean;
  yLog?: boolean;
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  width?: number;
  height?: number;
}

/** Lines with a marker and the value at every point. */
export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 760;
  const height = o.height ?? 440;
  const xf = o.xFormat ?? shortNumber;
  const yf = o.yFormat ?? shortNumber;
  const left = 78;
  const right = width - 30;
  const top = o.subtitle ? 62 : 48;
  const lg = legend(
    o.series.map((s) => s.name),
    left,
    0,
    right - left,
  );
  const bottom = height - 64 - lg.height;
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]));
  const xAxis = makeAxis(xs, o.xLog ?? false, false);
  const yAxis = makeAxis(ys, o.yLog ?? false, !(o.yLog ?? false));
  if (o.xLog) xAxis.ticks = [...new Set([...xAxis.ticks.filter((t) => Number.isInteger(Math.log10(t))), ...xs])].sort((a, b) => a - b);
  const out = header(width, height, o.title, o.subtitle);
  out.push(...yAxisSvg(yAxis, left, top, bottom, right, o.yLabel, yf));
  for (const t of xAxis.ticks) {
    const x = scale(xAxis, t, left, right);
    out.push(`<line x1="${r1(x)}" x2="${r1(x)}" y1="${bottom}" y2="${bottom + 5}" stroke="#888"/>`);
    out.push(`<text x="${r1(x)}" y="${bottom + 18}" text-anchor="middle" fill="#444">${esc(xf(t))}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 36}" text-anchor="middle" fill="#222">${esc(o.xLabel + (xAxis.log ? " (log scale)" : ""))}</text>`);
  const labels: Array<{ x: number; y: number; text: string; color: string }> = [];
  for (const [si, s] of o.series.entries()) {
    const color = PALETTE[si % PALETTE.length] as string;
    const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!yAxis.log || p[1] > 0)).sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) continue;
    const xy = pts.map(([x, y]) => [scale(xAxis, x, left, right), scale(yAxis, y, bottom, top)] as const);
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""} points="${xy.map(([x, y]) => `${r1(x)},${r1(y)}`).join(" ")}"/>`,
    );
    xy.forEach(([x, y], i) => {
      const p = pts[i] as [number, number];
      out.push(`<circle cx="${r1(x)}" cy="${r1(y)}" r="3.5" fill="${color}"><title>${esc(`${s.name}: ${xf(p[0])} -> ${yf(p[1])}`)}</title></circle>`);
      labels.push({ x: x + 5, y: y - 6, text: yf(p[1]), color });
    });
  }
  // Value labels at one x never overlap: sorted top to bottom, each at least a line below the previous.
  labels.sort((a, b) => a.x - b.x || a.y - b.y);
  for (let i = 1; i < labels.length; i++) {
    const cur = labels[i] as (typeof labels)[number];
    for (let j = i - 1; j >= 0; j--) {
      const prev = labels[j] as (typeof labels)[number];
      if (Math.abs(prev.x - cur.x) > 30) break;
      if (cur.y - prev.y < 11) cur.y = prev.y + 11;
    }
  }
  for (const l of labels) out.push(`<text x="${r1(l.x)}" y="${r1(l.y)}" font-size="10" fill="${l.color}">${esc(l.text)}</text>`);
  const l = legend(
    o.series.map((s) => s.name),
    left,
    height - lg.height - 2,
    right - left,
  );
  out.push(...l.svg);
  out.push("</svg>");
  return out.join("\n") + "\n";
}
