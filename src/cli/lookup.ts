// authz lookup: which resources a subject may act on, or which subjects may
// act on a resource. Waits for the lookup RPCs; their change replaces this.
import { pending } from "./common.js";

export const command = pending("lookup", "LookupResources / LookupSubjects");
