// Rate limits as a sidecar sees them: which policy and subject an Envoy
// descriptor names, the RLS window unit of a policy, and the HTTP headers of
// a rate-limit answer (Retry-After, RateLimit-Limit/-Remaining/-Reset). Pure.

import type { RateSubjectType } from "../engine/rate-limit-policies.js";
import { AuthzError } from "../errors.js";
import type { RateLimitServiceMapping } from "./config.js";

/** A descriptor entry (key, value). */
export interface DescriptorEntry {
  readonly key: string;
  readonly value: string;
}

/**
 * The most descriptors one ShouldRateLimit request may carry, and entries
 * one descriptor may hold (docs/mesh.md). Envoy sends one descriptor per
 * rate_limits action of a route, each with a few entries; anything near
 * these bounds is a misconfiguration or an attack, and one call must not
 * make one huge Lua call or hold the event loop.
 */
export const MAX_DESCRIPTORS = 64;
export const MAX_DESCRIPTOR_ENTRIES = 32;

/** INVALID_ARGUMENT (TOO_MANY_DESCRIPTORS, TOO_MANY_DESCRIPTOR_ENTRIES) beyond those bounds. */
export function checkDescriptorBounds(descriptors: ReadonlyArray<{ readonly entries: readonly unknown[] }>): void {
  if (descriptors.length > MAX_DESCRIPTORS) {
    throw new AuthzError("INVALID_ARGUMENT", `descriptors holds ${descriptors.length} descriptors; at most ${MAX_DESCRIPTORS} per call`, {
      reason: "TOO_MANY_DESCRIPTORS",
      metadata: { field: "descriptors", max: String(MAX_DESCRIPTORS) },
    });
  }
  const i = descriptors.findIndex((d) => d.entries.length > MAX_DESCRIPTOR_ENTRIES);
  if (i >= 0) {
    throw new AuthzError(
      "INVALID_ARGUMENT",
      `descriptors[${i}] holds ${descriptors[i]?.entries.length} entries; at most ${MAX_DESCRIPTOR_ENTRIES} per descriptor`,
      { reason: "TOO_MANY_DESCRIPTOR_ENTRIES", metadata: { field: `descriptors[${i}].entries`, max: String(MAX_DESCRIPTOR_ENTRIES) } },
    );
  }
}

/** What one descriptor asks for. */
export interface DescriptorPlan {
  /** The named policy; undefined = every policy assigned to the subject. */
  readonly policy: string | undefined;
  /** The first entry of each rate subject type, by the mapping's subject_keys. */
  readonly subjects: Partial<Record<RateSubjectType, string>>;
}

/** Reads a descriptor through the mapping; entries with other keys are ignored. */
export function planDescriptor(m: RateLimitServiceMapping, entries: readonly DescriptorEntry[]): DescriptorPlan {
  let policy: string | undefined;
  const subjects: Partial<Record<RateSubjectType, string>> = {};
  for (const e of entries) {
    if (e.key === m.policyKey) {
      policy ??= e.value;
      continue;
    }
    const t = m.subjectKeys.get(e.key);
    if (t && subjects[t] === undefined) subjects[t] = e.value;
  }
  return { policy: policy === "" ? undefined : policy, subjects };
}

export type WindowUnit = "second" | "minute" | "hour" | "day" | "week" | "month" | "year";
const UNITS: ReadonlyArray<[WindowUnit, number]> = [
  ["second", 1],
  ["minute", 60],
  ["hour", 3600],
  ["day", 86_400],
  ["week", 604_800],
  ["month", 2_592_000],
  ["year", 31_536_000],
];

/**
 * The RLS unit of a policy window: the unit of that exact length, else the
 * shortest unit longer than the window (RLS cannot express e.g. 300 s;
 * duration_until_reset stays exact).
 */
export function windowUnit(windowSec: number): WindowUnit {
  const exact = UNITS.find(([, s]) => s === windowSec);
  if (exact) return exact[0];
  return (UNITS.find(([, s]) => s > windowSec) ?? UNITS[UNITS.length - 1]!)[0];
}

/** What the headers of one rate-limit answer are built from (the deciding policy). */
export interface RateLimitFigures {
  readonly limit: number;
  readonly remaining: number;
  readonly resetAfterUs: number;
  /** 0 when allowed; -1 when the cost can never pass. */
  readonly retryAfterUs: number;
}

const seconds = (us: number) => Math.max(0, Math.ceil(us / 1_000_000));

/**
 * RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (delta seconds),
 * plus Retry-After (seconds, at least 1) when denied.
 */
export function rateLimitHeaders(f: RateLimitFigures, denied: boolean): Array<[string, string]> {
  const reset = seconds(f.resetAfterUs);
  const out: Array<[string, string]> = [
    ["ratelimit-limit", String(f.limit)],
    ["ratelimit-remaining", String(Math.max(0, f.remaining))],
    ["ratelimit-reset", String(reset)],
  ];
  // A request that can never pass (its cost above the limit: retryAfterUs is NEVER) is told no time to retry at.
  if (denied && f.retryAfterUs >= 0) out.unshift(["retry-after", String(Math.max(1, f.retryAfterUs > 0 ? seconds(f.retryAfterUs) : reset))]);
  return out;
}
