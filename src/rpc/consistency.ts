import type { Consistency } from "../../gen/authz/v1/common_pb.js";
import { invalidArgument, printablePrefix } from "../errors.js";
import { REVISION } from "../validation.js";
import type { CallContext } from "./handler-types.js";

/** Longest a call waits for freshness when its deadline allows more (AUTHZ_MAX_WAIT_MS overrides). */
export const MAX_FRESHNESS_WAIT_MS = 5000;

export type Freshness = { kind: "latest" } | { kind: "at_least"; revision: bigint } | { kind: "full" };

/** Anything that can hand out a state at a requested freshness (the live engine). */
export interface FreshSource<T> {
  current(): T;
  atLeast(revision: bigint, timeoutMs: number): Promise<T>;
  fullyConsistent(timeoutMs: number): Promise<T>;
}

export function toFreshness(c: Consistency | undefined): Freshness {
  const r = c?.requirement;
  if (!r || r.case === undefined || r.case === "minimizeLatency") return { kind: "latest" };
  if (r.case === "fullyConsistent") return { kind: "full" };
  if (!REVISION.test(r.value)) {
    throw invalidArgument(
      `consistency.at_least_as_fresh must be a revision token returned by authz, got "${printablePrefix(r.value)}"`,
      "consistency.at_least_as_fresh",
    );
  }
  return { kind: "at_least", revision: BigInt(r.value) };
}

/** The state to answer from: never older than asked, waiting at most min(deadline, maxWaitMs). */
export function stateFor<T>(source: FreshSource<T>, f: Freshness, ctx: CallContext, maxWaitMs = MAX_FRESHNESS_WAIT_MS): T | Promise<T> {
  if (f.kind === "latest") return source.current();
  const left = ctx.timeRemainingMs();
  const budget = Math.max(1, Math.min(maxWaitMs, left === undefined ? maxWaitMs : left - 5));
  return f.kind === "full" ? source.fullyConsistent(budget) : source.atLeast(f.revision, budget);
}
