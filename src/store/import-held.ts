// Restore mode's repeated writes. With a table's unique keys down
// (import-restore.ts) its rows go in by plain inserts, so a record that writes
// a row the import has already written (the seeds describe one assignment in
// UserRole and in UserOrganizationInfo, one grant in RolePermission and in
// ROLE_PERMISSION) cannot go in with them: it would add the row twice. Such
// writes are held back and run, in the document's order, as the usual upserts
// once the keys are built back. Holding a later write of a row back changes
// nothing that anything reads before it: every other write of the import
// touches other rows, and the checks that span records run after it.
//
// Which rows were written is kept in a Bloom filter, 16 MB at 5 million
// records (a set of the keys would take hundreds): it never misses a row
// written before, and a new row it takes for one (under one in a thousand
// while the import writes no more rows than it has records; more when one
// record writes many rows) is only held back, then inserted by its upsert.
// Hand-written (30 lines): the npm packages bring serialisation and kinds of
// filter not needed here.

import type { Deferred, Holder, Item } from "./import-bulk.js";
import { rowKey, runItems } from "./import-bulk.js";
import { ASSIGNMENT_KEY, combine, emptyLookups, type Outcome, type Upsert, upsertFor, type Validated } from "./import-rows.js";
import type { SqlQuerier } from "./sql.js";

/** Bits of the filter per row expected, and the hashes per row. */
const BITS_PER_ROW = 16;
const HASHES = 6;

/** FNV-1a over a string, continuing from h. */
function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h;
}

/** MurmurHash3's finaliser: every input bit moves every output bit. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** A Bloom filter over (namespace, key) strings, double hashing; sized for `rows` keys at BITS_PER_ROW or more. */
export class Seen {
  private readonly words: Int32Array;
  private readonly mask: number;

  constructor(rows: number) {
    let bits = 1 << 16;
    while (bits < rows * BITS_PER_ROW && bits < 2 ** 31) bits *= 2;
    this.words = new Int32Array(bits / 32);
    this.mask = bits - 1;
  }

  /** Adds the key; true when it may have been added before. */
  add(ns: string, key: string): boolean {
    const h = fnv(fnv(0x811c9dc5, ns), key);
    const h1 = mix(h);
    const h2 = mix(h ^ 0x9e3779b9) | 1;
    let seen = true;
    for (let k = 0; k < HASHES; k++) {
      const bit = (h1 + Math.imul(k, h2)) & this.mask;
      const w = bit >>> 5;
      const m = 1 << (bit & 31);
      if (((this.words[w] as number) & m) === 0) {
        seen = false;
        this.words[w] = (this.words[w] as number) | m;
      }
    }
    return seen;
  }
}

/** The namespace of role assignments by subject, role and scope (UserRole's and the places' conflict target). */
const ASSIGNMENTS = "role_assignments on constraint role_assignments_unique";

/** An assignment's subject, role and scope, as rowKey gives them for an upsert by that key. */
const naturalKey = (u: Upsert): string => rowKey({ ...u, conflict: "on constraint role_assignments_unique", keep: ASSIGNMENT_KEY });

/** The writes held back in one restore-mode import, and the records they belong to. */
export class Held implements Holder {
  private readonly seen: Seen;
  private readonly items: Array<Item & { owner: Deferred }> = [];
  private readonly records: Deferred[] = [];
  /** The assignments of the UserRole writes held back (by natural key): see underAnotherKey. */
  private readonly userRoles = new Set<string>();

  /** keyless: the tables whose keys are down; rows: about how many rows the import writes. */
  constructor(
    private readonly keyless: ReadonlySet<string>,
    rows: number,
  ) {
    this.seen = new Seen(rows);
  }

  /** True when the item's row may have been written already: it is held back, for owner()'s record. */
  hold(i: Item, owner: () => Deferred): boolean {
    if (!this.keyless.has(i.u.table)) return false;
    i.key ??= rowKey(i.u);
    // A ROLE_ASSIGNMENT (written by its id) writes an assignment a later place may name by subject, role
    // and scope (the usual import's upsert updates it): remember it under that key too, so the place's
    // write is held back as well, instead of failing the rebuild of the key and the import running twice.
    if (i.u.table === "role_assignments" && i.u.conflict === "(id)") this.seen.add(ASSIGNMENTS, naturalKey(i.u));
    if (!this.seen.add(`${i.u.table} ${i.u.conflict}`, i.key)) return false;
    this.items.push({ ...i, owner: owner() });
    if (i.rec.section === "UserRole") this.userRoles.add(i.key);
    return true;
  }

  /**
   * True when a ROLE_ASSIGNMENT record (written after UserRole, by its id)
   * gives the subject, role and scope of a UserRole write held back. The
   * usual import refuses it: the UserRole wrote that assignment first. Here
   * a held write that was the first of its row (one the filter took for
   * written) has not gone in, so building the key back finds nothing, and
   * the held upsert would update the ROLE_ASSIGNMENT's row instead: the
   * import is run again as usual.
   */
  underAnotherKey(assignments: readonly Validated[]): boolean {
    if (this.userRoles.size === 0) return false;
    const l = emptyLookups();
    for (const rec of assignments) {
      if (rec.del) continue;
      let u: Upsert;
      try {
        u = upsertFor(rec, l);
      } catch {
        return true; // refused when written: not here
      }
      if (this.userRoles.has(naturalKey(u))) return true;
    }
    return false;
  }

  /** A record with writes held back, counted once they have run. */
  defer(section: string): Deferred {
    const d: Deferred = { section, outcome: "unchanged" };
    this.records.push(d);
    return d;
  }

  /** Runs the held writes as upserts (the keys are back); the records they complete, with their outcomes. */
  async flush(tx: SqlQuerier): Promise<readonly Deferred[]> {
    if (this.items.length === 0) return this.records;
    const outcomes = await runItems(tx, this.items, undefined, { bare: true });
    this.items.forEach((i, n) => {
      i.owner.outcome = combine(i.owner.outcome, outcomes[n] as Outcome);
    });
    return this.records;
  }
}
