// Where a Check's time goes at scale: the engine's Check cut into cumulative
// stages, each timed in CPU seconds over the same queries, beside the
// Map.get + bit-test floor in the same rounds. A stage's cost is its
// difference from the stage before. Stages (each does all the work of the
// ones before it):
//   chars  both ids' characters read (charCodeAt, summed): what any parse of the text must do
//   parse  both ids parsed into words
//   probe  + the subject's and the resource's interner probes
//   place  + the subject's flags and the resource's place
//   match  + the permission matched on the place, and whether the subject may act
//   grant  + the walk of the subject's grants (Check's whole search)
//   check  Snapshot.check as shipped
//
// Run:  npm run build:bench && node --max-old-space-size=8192 dist/bench/engine-stages.js
// Env:  STAGES_SCALE   dataset scale (default 1 = 5M assignments)
//       STAGES_ROUNDS  rounds (default 5)
//       STAGES_CHECKS  checks per stage per round (default 1000000)

import { findGrant } from "../src/engine/check.js";
import { parseWords } from "../src/engine/interner.js";
import {
  cannotAct,
  matchedPerm,
  matchPermission,
  place,
  resolveById,
  resourceInterner,
  resourceKind,
  subjectExists,
  subjectInterner,
  subjectKind,
} from "../src/engine/places.js";
import type { State } from "../src/engine/state.js";
import { medianNsPerOp, probeFixture } from "./rounds.js";
import { type CheckQuery, runFloor } from "./dataset.js";

const W = new Int32Array(8);
const perm = { matched: -1, permOrg: -1, bit: 0 };

/** The subject (dense id, kind) and the resource kind of a query, after the stages up to `upTo`; -1 where a stage refused. */
function stages(st: State, x: CheckQuery, upTo: number, now: number): number {
  if (upTo === 0) return chars(x.subject.id) + chars(x.resource.id);
  const okS = parseWords(x.subject.id, W, 0);
  const okR = parseWords(x.resource.id, W, 4);
  if (upTo === 1) return okS && okR ? 1 : 0;
  const k = subjectKind(x.subject.type);
  const rk = resourceKind(x.resource.type);
  const s = subjectInterner(st, k).findWords(W, 0);
  const r = resourceInterner(st, rk).findWords(W, 4);
  if (upTo === 2) return s + r;
  if (!subjectExists(st, k, s) || !resolveById(st, rk, r)) return -1;
  if (upTo === 3) return place.org;
  const m = matchPermission(st, st.shared.keys.find(x.permission), place.org);
  if (m < 0 || cannotAct(st, k, s, now) !== undefined) return -1;
  if (upTo === 4) return m;
  perm.matched = m;
  perm.permOrg = matchedPerm.org;
  perm.bit = matchedPerm.bit;
  return findGrant(st, k, s, perm, now) ? 1 : 0;
}

/** Every character of an id read, nothing decided: the floor of any parse of the text. */
function chars(id: string): number {
  let x = 0;
  for (let k = 0; k < id.length; k++) x += id.charCodeAt(k);
  return x;
}

const NAMES = ["chars", "parse", "probe", "place", "match", "grant", "check"] as const;

function main(): void {
  const { scale, rounds, n, snap, st, now, Q, mask, floor } = probeFixture("STAGES");
  const stage = (upTo: number) => (): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const x = Q[i & mask] as CheckQuery;
      acc += upTo < 6 ? stages(st, x, upTo, now) : snap.check(x.subject, x.permission, x.resource, now).allowed ? 1 : 0;
    }
    return acc;
  };
  const { medians, sink } = medianNsPerOp(["floor", ...NAMES], [() => runFloor(floor, Q, n), ...NAMES.map((_, i) => stage(i))], rounds, n);
  const med = (i: number): number => medians[i] as number;
  process.stdout.write(`| stage | ns per check (median of ${rounds}) | this stage's own ns |\n|---|---:|---:|\n`);
  process.stdout.write(`| floor (Map.get + bit test) | ${med(0).toFixed(0)} | |\n`);
  NAMES.forEach((name, i) => {
    const own = i === 0 ? med(1) : med(i + 1) - med(i);
    process.stdout.write(`| ${name} | ${med(i + 1).toFixed(0)} | ${own.toFixed(0)} |\n`);
  });
  process.stdout.write(`(scale ${scale}, ${n} checks per stage and round; sink ${sink})\n`);
}

main();
