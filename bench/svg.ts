/**
 * The latency-against-throughput chart of a rate sweep, as a self-contained SVG (no library):
 * delivered msgs/s on x, end-to-end p50 and p99 (ms) on y, one point per phase.
 */

export interface SweepPoint {
  label: string;
  deliveriesPerS: number;
  p50Ms: number;
  p99Ms: number;
}

const W = 720;
const H = 420;
const M = { left: 70, right: 30, top: 50, bottom: 60 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 1, 2, 5 × 10^k steps giving about `n` ticks up to max. */
export function niceTicks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < max) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

function compact(v: number): string {
  if (v >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (v >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

export function sweepSvg(title: string, points: SweepPoint[]): string {
  const pts = [...points].sort((a, b) => a.deliveriesPerS - b.deliveriesPerS);
  const xTicks = niceTicks(Math.max(1, ...pts.map((p) => p.deliveriesPerS)));
  const yTicks = niceTicks(Math.max(0.1, ...pts.map((p) => p.p99Ms)));
  const xMax = xTicks[xTicks.length - 1];
  const yMax = yTicks[yTicks.length - 1];
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (v: number) => M.left + (v / xMax) * pw;
  const y = (v: number) => M.top + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  for (const t of xTicks) {
    out.push(`<line x1="${x(t)}" y1="${M.top}" x2="${x(t)}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x(t)}" y="${M.top + ph + 18}" text-anchor="middle">${compact(t)}</text>`);
  }
  for (const t of yTicks) {
    out.push(`<line x1="${M.left}" y1="${y(t)}" x2="${M.left + pw}" y2="${y(t)}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 8}" y="${y(t) + 4}" text-anchor="end">${compact(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}" stroke="black"/>`);
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}" stroke="black"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle">delivered messages/s</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">send → deliver latency (ms)</text>`);
  const series: Array<[string, string, (p: SweepPoint) => number]> = [['p50', '#1f77b4', (p) => p.p50Ms], ['p99', '#d62728', (p) => p.p99Ms]];
  for (const [name, color, get] of series) {
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${x(p.deliveriesPerS).toFixed(1)},${y(get(p)).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${x(p.deliveriesPerS).toFixed(1)}" cy="${y(get(p)).toFixed(1)}" r="4" fill="${color}"><title>${esc(`${p.label}: ${Math.round(p.deliveriesPerS)}/s, ${name} ${get(p)} ms`)}</title></circle>`);
    }
  }
  for (const p of pts) {
    out.push(`<text x="${x(p.deliveriesPerS).toFixed(1)}" y="${(y(p.p99Ms) - 9).toFixed(1)}" text-anchor="middle" fill="#555" font-size="10">${esc(p.label)}</text>`);
  }
  out.push(`<rect x="${M.left + 12}" y="${M.top + 8}" width="12" height="3" fill="#1f77b4"/><text x="${M.left + 30}" y="${M.top + 13}">p50</text>`);
  out.push(`<rect x="${M.left + 70}" y="${M.top + 8}" width="12" height="3" fill="#d62728"/><text x="${M.left + 88}" y="${M.top + 13}">p99</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
