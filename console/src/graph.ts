// Inline SVG drawings: the explain path of a decision as a chain of boxes,
// and a role inheritance graph in layers (parents above the roles that
// inherit them) with the closure of a selected role highlighted.

import { svg } from "./dom.js";

const W = 176;
const H = 44;
const GAP_X = 40;
const GAP_Y = 56;

const clip = (s: string, n = 21) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function arrowHead(id: string): SVGElement {
  return svg(
    "defs",
    {},
    svg(
      "marker",
      { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }),
    ),
  );
}

function box(x: number, y: number, title: string, label: string, cls: string, tooltip: string): SVGElement {
  return svg(
    "g",
    { class: `node ${cls}`, transform: `translate(${x},${y})` },
    svg("title", {}, tooltip),
    svg("rect", { width: W, height: H, rx: 6 }),
    svg("text", { x: 8, y: 16, class: "kind" }, title),
    svg("text", { x: 8, y: 34, class: "label" }, clip(label)),
  );
}

export interface PathNode {
  kind: string;
  label: string;
  tooltip: string;
}

/** A left-to-right chain: assignment → role → inherited roles → permission (or a single failure box). */
export function drawPath(nodes: readonly PathNode[]): SVGElement {
  const width = nodes.length * (W + GAP_X) - GAP_X + 2;
  const el = svg("svg", { class: "graph path", width, height: H + 2, viewBox: `-1 -1 ${width} ${H + 2}`, role: "img", "aria-label": "decision path" });
  el.append(arrowHead("path-arrow"));
  nodes.forEach((n, i) => {
    const x = i * (W + GAP_X);
    if (i > 0) el.append(svg("line", { x1: x - GAP_X, y1: H / 2, x2: x - 2, y2: H / 2, class: "edge", "marker-end": "url(#path-arrow)" }));
    el.append(box(x, 0, n.kind, n.label, n.kind.toLowerCase().replace(/[^a-z]+/g, "-"), n.tooltip));
  });
  return el;
}

export interface GraphRole {
  id: string;
  key: string;
  parents: readonly string[];
}

/** The role and every role it inherits, transitively. */
export function closureOf(roles: ReadonlyMap<string, GraphRole>, id: string): Set<string> {
  const seen = new Set<string>();
  const stack = [id];
  while (stack.length) {
    const r = stack.pop() as string;
    if (seen.has(r) || !roles.has(r)) continue;
    seen.add(r);
    stack.push(...(roles.get(r)?.parents ?? []));
  }
  return seen;
}

/** Layer of each role: 0 for a role that inherits nothing (in this set), else one below its lowest parent. */
function layers(roles: ReadonlyMap<string, GraphRole>): Map<string, number> {
  const depth = new Map<string, number>();
  const visit = (id: string, trail: Set<string>): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (trail.has(id)) return 0; // never for valid data: cycles are refused on write
    trail.add(id);
    const parents = (roles.get(id)?.parents ?? []).filter((p) => roles.has(p));
    const d = parents.length ? 1 + Math.max(...parents.map((p) => visit(p, trail))) : 0;
    depth.set(id, d);
    return d;
  };
  for (const id of roles.keys()) visit(id, new Set());
  return depth;
}

/** The inheritance graph; `selected`'s closure is highlighted; clicking a role calls onSelect. */
export function drawRoles(list: readonly GraphRole[], selected: string | undefined, onSelect: (id: string) => void): SVGElement {
  const roles = new Map(list.map((r) => [r.id, r]));
  const depth = layers(roles);
  const rows: GraphRole[][] = [];
  for (const r of [...list].sort((a, b) => a.key.localeCompare(b.key))) (rows[depth.get(r.id) ?? 0] ??= []).push(r);
  const pos = new Map<string, { x: number; y: number }>();
  rows.forEach((row, y) => {
    row.forEach((r, x) => {
      pos.set(r.id, { x: x * (W + GAP_X), y: y * (H + GAP_Y) });
    });
  });
  const width = Math.max(1, ...rows.map((r) => r.length)) * (W + GAP_X);
  const height = rows.length * (H + GAP_Y);
  const lit = selected ? closureOf(roles, selected) : new Set<string>();
  const el = svg("svg", { class: "graph roles", width, height, viewBox: `-1 -1 ${width} ${height}`, role: "img", "aria-label": "role inheritance" });
  el.append(arrowHead("role-arrow"));
  for (const r of list) {
    const from = pos.get(r.id);
    for (const p of r.parents) {
      const to = pos.get(p);
      if (!from || !to) continue;
      const cls = lit.has(r.id) && lit.has(p) ? "edge lit" : "edge";
      el.append(svg("line", { x1: from.x + W / 2, y1: from.y, x2: to.x + W / 2, y2: to.y + H + 2, class: cls, "marker-end": "url(#role-arrow)" }));
    }
  }
  for (const r of list) {
    const p = pos.get(r.id) as { x: number; y: number };
    const cls = r.id === selected ? "role selected" : lit.has(r.id) ? "role lit" : "role";
    const node = box(p.x, p.y, "ROLE", r.key, cls, `${r.key} (${r.id})`);
    node.addEventListener("click", () => onSelect(r.id));
    el.append(node);
  }
  return el;
}
