// The directory importer: a seed-shaped JSON document (docs/data-model.md,
// "Import file format") checked whole, then written in one transaction,
// every section in bulk (import-bulk.ts), deletions first (import-delete.ts).
// A large import logs one RELOAD change row instead of one per row, so
// replicas load a snapshot instead of replaying it (migration 0009).

import { readLatestRevision } from "./change-feed.js";
import { CHUNK_REFUSED, type Pipe, RecordRefused, tally, writeOneByOne, writeSection } from "./import-bulk.js";
import { DELETE_KEYS, deleteKeyFields, deleteSection } from "./import-delete.js";
import { Held } from "./import-held.js";
import { REBUILD_REFUSED, rebuildAfterRestore, stripForRestore } from "./import-restore.js";
import type { Validated, Value } from "./import-rows.js";
import { type FieldSpec, type FieldType, SECTIONS, type SectionSpec } from "./import-spec.js";
import { describeViolation, singleRoleViolations } from "./role-structure.js";
import { type SqlClient, SqlError, type SqlQuerier } from "./sql.js";
import { INTERNAL_WRITER, runWrite } from "./write-pipeline.js";
import { UUID } from "../validation.js";

/** An import that was refused; nothing was written. Each problem names its record. */
export class ImportError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(
      problems.length === 1
        ? `import failed, nothing written: ${problems[0]}`
        : `import failed, nothing written (${problems.length} problems):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    this.name = "ImportError";
    this.problems = problems;
  }
}

export interface SectionCounts {
  inserted: number;
  updated: number;
  unchanged: number;
  /** Records with "$delete": true that removed their row (one that named no row counts as unchanged). */
  deleted: number;
}

export interface ImportSummary {
  revisionBefore: string;
  revisionAfter: string;
  sections: Record<string, SectionCounts>;
  dryRun: boolean;
  /** How the import was logged for replicas: one change row per row, or one RELOAD row. */
  changeLog: "rows" | "reload";
  /**
   * "restore": the directory was empty, and the big tables' secondary indexes and foreign keys were built
   * once after the rows were in (import-restore.ts); "upsert": they were kept up to date row by row.
   */
  writeMode: "restore" | "upsert";
}

/** Where an import is: after each statement, per section and overall. */
export interface ImportProgress {
  readonly section: string;
  /** "delete" while a section's deletions run, "write" while its upserts do. */
  readonly phase: "delete" | "write";
  readonly sectionDone: number;
  readonly sectionTotal: number;
  readonly done: number;
  readonly total: number;
  /** True in the second pass of a restore-mode import that was refused: the usual import, run to name the record. */
  readonly again?: boolean;
}

export interface ImportOptions {
  /** Run everything, report, roll back. */
  dryRun?: boolean;
  /**
   * "rows": every changed row is logged (replicas apply it incrementally);
   * "reload": one RELOAD row (replicas load a snapshot); "auto" (default):
   * "reload" from RELOAD_THRESHOLD records on.
   */
  changeLog?: "rows" | "reload" | "auto";
  onProgress?: (p: ImportProgress) => void;
  /** false: one statement per record, as before bulk writing (benchmarks compare the two). Default true. */
  bulk?: boolean;
  /**
   * Restore mode (import-restore.ts) when the directory is empty: true, at any size; false, never;
   * absent, for an import large enough to log one RELOAD row.
   */
  restore?: boolean;
}

/**
 * From this many records on, an import logs one RELOAD row instead of its
 * rows. Below it, replicas apply the rows in well under a second and keep
 * their snapshot; above it, logging every row slows the import by about a
 * third, and a backlog this size costs a replica about as much as a reload.
 */
export const RELOAD_THRESHOLD = 50_000;

type Rec = Record<string, unknown>;
/** A validated record: seed field → SQL text value (or null). */
type Clean = Map<string, Value>;

const MAX_PROBLEMS = 50;

/** The record field that marks a deletion. */
export const DELETE_MARKER = "$delete";

function describe(section: string, index: number, spec: SectionSpec, rec: Rec): string {
  const parts = spec.label
    .filter((k) => rec[k] !== undefined && rec[k] !== null && typeof rec[k] !== "object")
    .map((k) => `${k}=${String(rec[k]).slice(0, 80)}`);
  return `${section}[${index}]${parts.length ? ` (${parts.join(", ")})` : ""}`;
}

/** A value that does not fit its field: why (a class, so a valid value allocates nothing extra). */
class Invalid {
  constructor(readonly why: string) {}
}
const INVALID = {
  uuid: new Invalid("must be a UUID"),
  text: new Invalid("must be a string"),
  bool: new Invalid("must be true or false"),
  int: new Invalid("must be a whole number"),
  json: new Invalid("must be a JSON object"),
  ts: new Invalid("must be an ISO-8601 timestamp string between 0001-01-01 and 9999-12-31 UTC"),
  epoch: new Invalid("must be epoch seconds (a whole number) or an ISO-8601 timestamp string"),
  "text[]": new Invalid("must be an array of strings"),
} satisfies Record<FieldType, Invalid>;

/** An RFC 3339 timestamp with an explicit offset (any case, any fraction): PostgreSQL reads it exactly, to the microsecond. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
/** The instants every reader of a timestamp handles (the protobuf Timestamp's range): 0001-01-01 to 9999-12-31, UTC. */
const FIRST_MS = Date.parse("0001-01-01T00:00:00Z");
const LAST_MS = Date.parse("9999-12-31T23:59:59.999Z");

/**
 * A timestamp's SQL text. An RFC 3339 one goes to PostgreSQL as written, so that the microseconds of an export
 * survive its import (through a JS Date they were cut to milliseconds, and re-importing an export rewrote every
 * timestamped row); any other form Date.parse reads is normalised through a Date. Either way the instant must be
 * within 0001-01-01 and 9999-12-31 UTC: an offset can carry a wall time past either end (9999-12-31T23:59-01:00 is
 * year 10000), which PostgreSQL stores but no read can answer.
 */
const isoOf = (v: string): Value | Invalid => {
  const ms = Date.parse(v);
  if (Number.isNaN(ms) || ms < FIRST_MS || ms > LAST_MS + 0.999) return INVALID.ts;
  // Past microseconds PostgreSQL would round, possibly across the last instant: cut to microseconds instead.
  return RFC3339.test(v) ? v.replace(/(\.\d{6})\d+/, "$1") : new Date(ms).toISOString();
};

/** The field's SQL text (or null, or a text[]), or why it does not fit. */
function convert(type: FieldType, v: unknown): Value | string[] | Invalid {
  if (v === null) return null;
  switch (type) {
    case "uuid":
      return typeof v === "string" && UUID.test(v) ? v.toLowerCase() : INVALID.uuid;
    case "text":
      return typeof v === "string" ? v : INVALID.text;
    case "bool":
      return typeof v === "boolean" ? String(v) : INVALID.bool;
    case "int":
      return Number.isSafeInteger(v) ? String(v) : INVALID.int;
    case "json":
      return typeof v === "object" && !Array.isArray(v) ? JSON.stringify(v) : INVALID.json;
    case "ts":
      return typeof v === "string" ? isoOf(v) : INVALID.ts;
    case "epoch":
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return new Date(v * 1000).toISOString();
      if (typeof v !== "string") return INVALID.epoch;
      return Number.isNaN(Date.parse(v)) ? INVALID.epoch : isoOf(v);
    case "text[]":
      return Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : INVALID["text[]"];
  }
}

/** Why RateLimitCounter records are refused (docs/data-model.md, "Rate-limit counters"). */
export const COUNTERS_REFUSED =
  "rate-limit counters cannot be imported: live counts are kept by the counter store (Redis or in process), not the database, and a count from elsewhere would be stale by the time it loads; remove the section (authz export writes it only with --counters, for inspection)";

/** The deletion marker: absent or false (an upsert), true (a deletion); a problem otherwise. */
function deletion(label: string, r: Rec, section: string, problems: string[]): boolean {
  const m = r[DELETE_MARKER];
  if (m === undefined || m === false) return false;
  if (m !== true) problems.push(`${label}: ${DELETE_MARKER} must be true or false`);
  else if (!(section in DELETE_KEYS)) problems.push(`${label}: ${section} records cannot be deleted`);
  else {
    const alternatives = deleteKeyFields(section);
    if (!alternatives.some((need) => need.every((f) => r[f] !== undefined && r[f] !== null))) {
      problems.push(`${label}: a deletion needs ${alternatives.map((a) => a.join(" and ")).join(" or ")}`);
    }
  }
  return m === true;
}

const FIELD_LISTS = new Map(Object.entries(SECTIONS).map(([section, spec]) => [section, Object.entries(spec.fields) as Array<[string, FieldSpec]>]));

const NO_ARRAYS: ReadonlyMap<string, string[]> = new Map();

/** A validated record; its label (for messages) is built only when asked for. */
class Checked implements Validated {
  constructor(
    readonly section: string,
    readonly index: number,
    private readonly raw: Rec,
    readonly values: Clean,
    readonly arrays: Map<string, string[]>,
    readonly del: boolean,
  ) {}
  get label(): string {
    return describe(this.section, this.index, SECTIONS[this.section] as SectionSpec, this.raw);
  }
}

/** Checks one record's fields; returns it validated (problems pushed, never thrown). */
function validateRecord(section: string, spec: SectionSpec, r: Rec, index: number, problems: string[]): Validated {
  const labelOf = () => describe(section, index, spec, r);
  const del = r[DELETE_MARKER] === undefined ? false : deletion(labelOf(), r, section, problems);
  const values: Clean = new Map();
  let arrays = NO_ARRAYS as Map<string, string[]>;
  for (const k in r) {
    if (!(k in spec.fields) && k !== DELETE_MARKER) {
      problems.push(`${labelOf()}: unknown field "${k}" (fields of ${section}: ${Object.keys(spec.fields).join(", ")})`);
    }
  }
  for (const [name, field] of FIELD_LISTS.get(section) ?? []) {
    const v = r[name];
    if (v === undefined || (v === null && field.required)) {
      if (field.required && !del) problems.push(`${labelOf()}: ${name} is required`);
      continue;
    }
    const c = convert(field.type, v);
    if (c instanceof Invalid) {
      problems.push(`${labelOf()}: ${name} ${c.why}`);
      continue;
    }
    if (!Array.isArray(c)) values.set(name, c);
    else {
      if (arrays === NO_ARRAYS) arrays = new Map();
      arrays.set(name, c);
    }
  }
  return new Checked(section, index, r, values, arrays, del);
}

/** Thrown inside the import's transaction when a record just checked has a problem: the import reports the document's problems. */
const NOT_VALID = Symbol("invalid document");

/**
 * The document checked section by section in write order, so an import can
 * write its first sections while later ones are still unchecked: step() checks
 * a few more records while PostgreSQL runs a statement. Problems come out in
 * the order checking the whole document first gives, and nothing is written
 * when there is one (the import's transaction is rolled back).
 */
export class DocumentCheck {
  readonly problems: string[] = [];
  /** The records of the known sections (all of them once the document is checked). */
  readonly total: number = 0;
  /** Whether any record is marked "$delete" (deletions run first, children first: the whole document is checked before writing). */
  readonly hasDeletions: boolean = false;
  private readonly sections: Array<{ section: string; spec: SectionSpec; list: unknown[] | undefined; problem?: string }> = [];
  private at = 0;
  private index = 0;
  private readonly checked = new Map<string, Validated[]>();

  constructor(doc: unknown) {
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
      this.problems.push("the document must be a JSON object whose keys are seed section names");
      return;
    }
    for (const key of Object.keys(doc)) {
      if (key === "$schema" || key === "$comment") continue;
      if (!(key in SECTIONS)) this.problems.push(`unknown section "${key}" (known: ${Object.keys(SECTIONS).join(", ")})`);
    }
    for (const [section, spec] of Object.entries(SECTIONS)) {
      const list = (doc as Rec)[section];
      if (list !== undefined && !Array.isArray(list))
        this.sections.push({ section, spec, list: undefined, problem: `section ${section} must be an array of records` });
      else if (section === "RateLimitCounter" && list !== undefined && list.length > 0) {
        this.sections.push({ section, spec, list: undefined, problem: `section RateLimitCounter (${list.length} records): ${COUNTERS_REFUSED}` });
      } else {
        this.sections.push({ section, spec, list });
        this.total += list?.length ?? 0;
        if (list?.some((r) => typeof r === "object" && r !== null && (r as Rec)[DELETE_MARKER] !== undefined)) this.hasDeletions = true;
      }
    }
  }

  /** Checks up to n more records; true when every section is checked. */
  step(n: number): boolean {
    let budget = n;
    while (this.at < this.sections.length && budget > 0) {
      const s = this.sections[this.at] as (typeof this.sections)[number];
      if (this.index === 0 && s.problem) this.problems.push(s.problem);
      const list = s.list ?? [];
      const out = this.checked.get(s.section) ?? [];
      this.checked.set(s.section, out);
      const stop = Math.min(list.length, this.index + budget);
      budget -= stop - this.index;
      for (; this.index < stop; this.index++) {
        const rec = list[this.index];
        if (typeof rec !== "object" || rec === null || Array.isArray(rec)) this.problems.push(`${s.section}[${this.index}]: must be a JSON object`);
        else out.push(validateRecord(s.section, s.spec, rec as Rec, this.index, this.problems));
      }
      if (this.index >= list.length) {
        this.at++;
        this.index = 0;
      }
    }
    return this.at >= this.sections.length;
  }

  /**
   * A section's records, checked (with every section before it), in write
   * order: memberships that give up ownership before those that take it.
   * Throws NOT_VALID when the document has a problem so far.
   */
  section(name: string): Validated[] {
    const k = this.sections.findIndex((x) => x.section === name);
    while (this.at <= k) this.step(STEP_RECORDS);
    if (this.problems.length > 0) throw NOT_VALID;
    const recs = this.checked.get(name) ?? [];
    if (name !== "MEMBERSHIP") return recs;
    const owner = (r: Validated) => (r.values.get("owner") === "true" ? 1 : 0);
    return [...recs].sort((a, b) => owner(a) - owner(b) || a.index - b.index);
  }

  /** Checks the rest; every record (in section order) and the first problems. */
  finish(): { records: Validated[]; problems: string[] } {
    while (!this.step(Number.MAX_SAFE_INTEGER));
    return { records: [...this.checked.values()].flat(), problems: this.problems.slice(0, MAX_PROBLEMS) };
  }
}

/** Records checked at a time when a section's records are asked for. */
const STEP_RECORDS = 5_000;

/** Records checked per row the database is writing (DocumentCheck.step in writeAll). */
const CHECKS_PER_ROW = 4;

/** Checks the document's shape and every field; collects every problem. */
export function validateDocument(doc: unknown): { records: Validated[]; problems: string[] } {
  return new DocumentCheck(doc).finish();
}

/** Restore mode's state while the records are written: the tables whose keys are down, and the writes held back. */
interface Restore {
  keyless: ReadonlySet<string>;
  held: Held;
}

/** Writes every record: deletions children first, then upserts parents first. */
async function writeAll(tx: SqlQuerier, check: DocumentCheck, summary: ImportSummary, options: ImportOptions, restore?: Restore) {
  const sections = summary.sections;
  const onProgress = options.onProgress;
  const total = check.total;
  let done = 0;
  const count = (section: string) => (sections[section] ??= { inserted: 0, updated: 0, unchanged: 0, deleted: 0 });
  const tracker = (section: string, phase: "delete" | "write", sectionTotal: number) => {
    let sectionDone = 0;
    return (n: number) => {
      sectionDone += n;
      done += n;
      onProgress?.({ section, phase, sectionDone, sectionTotal, done, total });
    };
  };
  const order = Object.keys(SECTIONS);
  // Deletions (the document was checked whole before the transaction) run first, children first.
  for (const section of check.hasDeletions ? [...order].reverse() : []) {
    const dels = check.section(section).filter((r) => r.del);
    if (dels.length === 0) continue;
    const gone = await deleteSection(tx, dels, tracker(section, "delete", dels.length));
    for (const g of gone) count(section)[g ? "deleted" : "unchanged"]++;
  }
  // While PostgreSQL writes a chunk, the records after it are checked: a few per row
  // written (checking a record costs about a tenth of writing a row).
  const meanwhile = (rows: number) => void check.step(CHECKS_PER_ROW * rows);
  // Restore mode runs chunks without savepoints: a refused one reruns the import as usual (importDocument).
  const pipe: Pipe = { meanwhile, ...(restore ? { bare: true, keyless: restore.keyless, held: restore.held } : {}) };
  for (const section of order) {
    const ups = check.section(section).filter((r) => !r.del);
    if (ups.length === 0) continue;
    const track = tracker(section, "write", ups.length);
    const t = options.bulk === false ? tally(await writeOneByOne(tx, ups, track)) : await writeSection(tx, ups, track, pipe);
    for (const k of ["inserted", "updated", "unchanged"] as const) count(section)[k] += t[k];
  }
}

const changed = (sections: Record<string, SectionCounts>) => Object.values(sections).some((c) => c.inserted + c.updated + c.deleted > 0);

/**
 * Writes a seed-shaped document in one transaction: everything or nothing.
 * Re-importing the same document changes nothing (and adds no revision).
 */
export async function importDocument(db: SqlClient, doc: unknown, options: ImportOptions = {}): Promise<ImportSummary> {
  // The document's records are checked as it is written (DocumentCheck); one with deletions, or
  // whose shape is wrong, is checked whole first. Nothing is written when a record has a problem.
  const check = new DocumentCheck(doc);
  if (check.hasDeletions || check.problems.length > 0) {
    const { problems } = check.finish();
    if (problems.length > 0) throw new ImportError(problems);
  }
  const mode = options.changeLog ?? "auto";
  const changeLog = mode === "reload" || (mode === "auto" && check.total >= RELOAD_THRESHOLD) ? "reload" : "rows";
  const sections: Record<string, SectionCounts> = {};
  const summary: ImportSummary = { revisionBefore: "", revisionAfter: "", sections, dryRun: options.dryRun === true, changeLog, writeMode: "upsert" };
  try {
    summary.revisionBefore = (await readLatestRevision(db)).toString();
    summary.revisionAfter = summary.revisionBefore;
    // The one write pipeline (numbering, the writers' lock); the importer is an in-process writer.
    const { revision } = await runWrite(db, INTERNAL_WRITER, {
      rpc: "import",
      request: null,
      apply: ({ tx }) => writeDocument(tx, check, summary, options),
    });
    summary.revisionAfter = revision;
  } catch (err) {
    if (err === DRY_RUN) return summary;
    // Restore mode refused a chunk, or could not build an index or foreign key back: the usual import names the record.
    if (err === REBUILD_REFUSED || err === CHUNK_REFUSED) {
      const onProgress = options.onProgress;
      return importDocument(db, doc, { ...options, restore: false, ...(onProgress ? { onProgress: (p) => onProgress({ ...p, again: true }) } : {}) });
    }
    // The document's problems are what the import reports, whatever else failed first (a record
    // the database refused, an unreachable database), as when it is checked whole before writing.
    const { problems } = check.finish();
    if (problems.length > 0) throw new ImportError(problems);
    throw err;
  }
  return summary;
}

/** The import transaction's idle bound: its client builds statements between them. */
const IMPORT_IDLE_IN_TRANSACTION_MS = 120_000;

/** Thrown inside the transaction to roll a dry run back. */
const DRY_RUN = Symbol("dry run");

/** The import's transaction: every record, then the rules that span records; DRY_RUN rolls it back. */
async function writeDocument(tx: SqlQuerier, check: DocumentCheck, summary: ImportSummary, options: ImportOptions): Promise<void> {
  // The pool's 5 s idle-in-transaction bound is a net for wedged connections; an import
  // builds each section's statements between them, which on a busy machine at 100k+
  // records can take longer than that. It keeps a net, a wider one.
  await tx.query(`set local idle_in_transaction_session_timeout = '${IMPORT_IDLE_IN_TRANSACTION_MS}ms'`);
  // A large import logs one RELOAD row instead of its rows (migration 0009).
  if (summary.changeLog === "reload") await tx.query("select authz_bulk_begin()");
  // Inheritance cycles are checked per statement, so a refusal names its record.
  // Whole-avatar rules (exactly one owner) can only hold once every record
  // is in: they are checked below, after the last record.
  await tx.query("set constraints role_inheritance_valid immediate");
  const restore = options.bulk !== false && !check.hasDeletions && (options.restore ?? summary.changeLog === "reload");
  const keyless = restore ? await stripForRestore(tx) : undefined;
  const state = keyless && { keyless, held: new Held(keyless, check.total) };
  if (state) summary.writeMode = "restore";
  try {
    await writeAll(tx, check, summary, options, state);
  } catch (err) {
    // In restore mode the foreign keys are down until the rebuild: an earlier record whose reference the
    // usual import refuses has gone in, so this refusal need not be the first. Run again as usual to name it.
    if (err instanceof RecordRefused) throw summary.writeMode === "restore" ? CHUNK_REFUSED : new ImportError([err.message]);
    throw err;
  }
  if (state) {
    await rebuildAfterRestore(tx);
    // A ROLE_ASSIGNMENT naming a held UserRole's assignment under its own id: the usual import refuses it.
    if (state.held.underAnotherKey(check.section("ROLE_ASSIGNMENT"))) throw CHUNK_REFUSED;
    // The writes held back (rows written again), as upserts now that the keys are back.
    for (const d of await state.held.flush(tx)) (summary.sections[d.section] ??= { inserted: 0, updated: 0, unchanged: 0, deleted: 0 })[d.outcome]++;
  }
  await tx.query("select setval(pg_get_serial_sequence('rate_limit_policies', 'id'), greatest((select max(id) from rate_limit_policies), 1))");
  if (summary.changeLog === "reload" && changed(summary.sections)) {
    await tx.query("select authz_log_reload($1::text::jsonb)", [JSON.stringify({ sections: summary.sections })]);
  }
  try {
    // Run the remaining deferred checks now, inside the import, so a
    // refusal is an ImportError (and --dry-run reports it too).
    await tx.query("set constraints all immediate");
  } catch (err) {
    if (!(err instanceof SqlError)) throw err;
    throw new ImportError([`the imported records break a rule that spans records: ${err.message}`]);
  }
  // The org_role_structure rule (docs/data-model.md, "Role structure") over what the file touched:
  // found in the transaction's change log, or, for a bulk import that logged no rows, everywhere.
  const broken = await singleRoleViolations(tx, summary.changeLog === "reload" ? "all" : "changed");
  if (broken.length > 0) throw new ImportError(broken.map((v) => `the imported records break the role structure rule: ${describeViolation(v)}`));
  if (options.dryRun) throw DRY_RUN;
}
