// The shared part of the batch RPCs (ManageRoles, ManageRateLimits,
// ManageDirectory): the request's mutations, bounded before any of them is
// translated, with its idempotency key and expected revision, as the store's
// batch writers take them (store/write-pipeline.ts).

import { invalidArgument } from "../errors.js";
import { type BatchInput, MAX_MUTATIONS } from "../store/write-pipeline.js";

/** What every batch request message carries (proto3: "" when unset). */
export interface BatchRequest<P> {
  mutations: P[];
  idempotencyKey: string;
  expectedRevision: string;
}

/** Translates a batch request for its writer: INVALID_ARGUMENT when it holds more than MAX_MUTATIONS changes. */
export function batchInput<P, M>(req: BatchRequest<P>, from: (m: P, index: number) => M): BatchInput<M> {
  if (req.mutations.length > MAX_MUTATIONS) throw invalidArgument(`mutations must hold 1 to ${MAX_MUTATIONS} changes`, "mutations");
  return {
    mutations: req.mutations.map((m, i) => from(m, i)),
    ...(req.idempotencyKey !== "" ? { idempotencyKey: req.idempotencyKey } : {}),
    ...(req.expectedRevision !== "" ? { expectedRevision: req.expectedRevision } : {}),
  };
}
