// Paging of the lookups at one revision. The first page pins the snapshot it
// was answered from; every later page is answered from that very snapshot
// (snapshots are immutable), so the pages of one answer never mix two
// revisions. The iterator a page stopped in is kept too, so the next page
// continues where it stopped instead of walking the answer again. Both are
// held for a bounded time after their last use and in bounded numbers; past
// that a token is refused with ABORTED (LOOKUP_EXPIRED) and the caller
// restarts (or uses the streaming variant, which holds its snapshot itself).

import { createHash } from "node:crypto";
import type { Snapshot } from "../engine/snapshot.js";
import { AuthzError, invalidArgument } from "../errors.js";
import { REVISION } from "../validation.js";

export const DEFAULT_LOOKUP_PAGE_SIZE = 100;
export const MAX_LOOKUP_PAGE_SIZE = 1000;
/** How long a pinned snapshot or a suspended page stays after its last use. */
export const LOOKUP_PIN_TTL_MS = 60_000;
const MAX_PINNED_SNAPSHOTS = 16;
const MAX_CURSORS = 256;

export interface PageToken {
  /** Revision of the answer. */
  r: string;
  /** Offset of the next item. */
  o: number;
  /** Digest of the request and its caller. */
  q: string;
  /** The decision time of the answer (epoch ms): expiry is judged as of the first page. */
  n: number;
}

export const lookupDigest = (v: unknown): string => createHash("sha256").update(JSON.stringify(v)).digest("base64url").slice(0, 22);

const encode = (t: PageToken) => Buffer.from(JSON.stringify(t)).toString("base64url");

function decode(raw: string, rpc: string): PageToken {
  try {
    const t = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as PageToken;
    if (Number.isSafeInteger(t.o) && t.o > 0 && typeof t.q === "string" && Number.isSafeInteger(t.n) && typeof t.r === "string" && REVISION.test(t.r)) {
      return t;
    }
  } catch {
    // fall through
  }
  throw invalidArgument(`page_token is not a token returned by ${rpc}`, "page_token");
}

export function pageSizeOf(requested: number): number {
  if (requested < 0 || requested > MAX_LOOKUP_PAGE_SIZE) {
    throw invalidArgument(`page_size must be between 0 and ${MAX_LOOKUP_PAGE_SIZE}, got ${requested}`, "page_size");
  }
  return requested || DEFAULT_LOOKUP_PAGE_SIZE;
}

interface Held<T> {
  value: T;
  until: number;
}

/** One page of an answer. */
export interface LookupPage<T> {
  items: T[];
  snapshot: Snapshot;
  nextPageToken: string;
}

export class LookupPages {
  readonly #snapshots = new Map<string, Held<Snapshot>>();
  readonly #cursors = new Map<string, Held<Iterator<unknown>>>();

  constructor(private readonly clock: () => number = Date.now) {}

  /** The token's content, checked against this request (INVALID_ARGUMENT when it is not one of this request's). */
  token(raw: string, query: string, rpc: string): PageToken {
    const t = decode(raw, rpc);
    if (t.q !== query) throw invalidArgument(`page_token belongs to a different ${rpc} request (its fields and page_size must not change)`, "page_token");
    return t;
  }

  /** The snapshot a token's pages are answered from; ABORTED (LOOKUP_EXPIRED) when it is no longer held. */
  snapshotFor(t: PageToken, current: Snapshot): Snapshot {
    this.#sweep();
    const held = this.#snapshots.get(t.r);
    if (held) {
      held.until = this.clock() + LOOKUP_PIN_TTL_MS;
      return held.value;
    }
    if (current.revision.toString() === t.r) return current;
    throw new AuthzError("ABORTED", `this replica no longer holds revision ${t.r}, at which the lookup began; restart it without a page_token`, {
      reason: "LOOKUP_EXPIRED",
    });
  }

  /**
   * One page of `items` (the whole answer in a fixed order), filtered by
   * `visible`: continues a suspended iterator when there is one, otherwise
   * walks the answer from its start to the token's offset.
   */
  page<T>(
    snapshot: Snapshot,
    t: PageToken | undefined,
    query: string,
    size: number,
    now: number,
    items: () => Iterator<T>,
    visible: (x: T) => boolean,
  ): LookupPage<T> {
    const offset = t?.o ?? 0;
    const key = `${query}|${snapshot.revision}|${offset}`;
    let it = this.#cursors.get(key)?.value as Iterator<T> | undefined;
    this.#cursors.delete(key);
    if (!it) {
      it = items();
      for (let skipped = 0; skipped < offset; ) {
        const n = it.next();
        if (n.done) break;
        if (visible(n.value)) skipped++;
      }
    }
    const out: T[] = [];
    let ahead: Iterator<T> | undefined;
    for (let n = it.next(); !n.done; n = it.next()) {
      if (!visible(n.value)) continue;
      if (out.length === size) {
        // The item read past the page is the next page's first: keep it in front of the iterator.
        ahead = pushBack(n.value, it);
        break;
      }
      out.push(n.value);
    }
    if (!ahead) return { items: out, snapshot, nextPageToken: "" };
    const next = offset + size;
    this.#hold(snapshot, `${query}|${snapshot.revision}|${next}`, ahead);
    return { items: out, snapshot, nextPageToken: encode({ r: snapshot.revision.toString(), o: next, q: query, n: now }) };
  }

  #hold(snapshot: Snapshot, key: string, it: Iterator<unknown>): void {
    const until = this.clock() + LOOKUP_PIN_TTL_MS;
    const rev = snapshot.revision.toString();
    this.#snapshots.delete(rev);
    this.#snapshots.set(rev, { value: snapshot, until });
    this.#cursors.set(key, { value: it, until });
    evictOldest(this.#snapshots, MAX_PINNED_SNAPSHOTS);
    evictOldest(this.#cursors, MAX_CURSORS);
  }

  #sweep(): void {
    const now = this.clock();
    for (const m of [this.#snapshots, this.#cursors] as Array<Map<string, Held<unknown>>>) {
      for (const [k, v] of m) if (v.until <= now) m.delete(k);
    }
  }
}

function evictOldest(m: Map<string, unknown>, max: number): void {
  while (m.size > max) {
    const first = m.keys().next();
    if (first.done) return;
    m.delete(first.value);
  }
}

function pushBack<T>(first: T, rest: Iterator<T>): Iterator<T> {
  let pending = true;
  return {
    next: () => {
      if (pending) {
        pending = false;
        return { done: false, value: first };
      }
      return rest.next();
    },
  };
}
