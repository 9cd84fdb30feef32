import { readLatestRevision } from "./change-feed.js";
import { type FieldSpec, type FieldType, SECTIONS, type SectionSpec } from "./import-spec.js";
import { describeViolation, singleRoleViolations } from "./role-structure.js";
import { type SqlClient, SqlError, type SqlQuerier } from "./sql.js";
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
}

export interface ImportSummary {
  revisionBefore: string;
  revisionAfter: string;
  sections: Record<string, SectionCounts>;
  dryRun: boolean;
}

type Value = string | null;
type Rec = Record<string, unknown>;
/** A validated record: seed field → SQL text value (or null). */
type Clean = Map<string, Value>;

const MAX_PROBLEMS = 50;

const SQL_TYPE: Record<Exclude<FieldType, "text[]">, string> = {
  uuid: "uuid",
  text: "text",
  bool: "boolean",
  int: "integer",
  json: "jsonb",
  ts: "timestamptz",
  epoch: "timestamptz",
};

function describe(section: string, index: number, spec: SectionSpec, rec: Rec): string {
  const parts = spec.label
    .filter((k) => rec[k] !== undefined && rec[k] !== null && typeof rec[k] !== "object")
    .map((k) => `${k}=${String(rec[k]).slice(0, 80)}`);
  return `${section}[${index}]${parts.length ? ` (${parts.join(", ")})` : ""}`;
}

function convert(type: FieldType, v: unknown): { ok: true; value: Value | string[] } | { ok: false; why: string } {
  if (v === null) return { ok: true, value: null };
  switch (type) {
    case "uuid":
      return typeof v === "string" && UUID.test(v) ? { ok: true, value: v.toLowerCase() } : { ok: false, why: "must be a UUID" };
    case "text":
      return typeof v === "string" ? { ok: true, value: v } : { ok: false, why: "must be a string" };
    case "bool":
      return typeof v === "boolean" ? { ok: true, value: String(v) } : { ok: false, why: "must be true or false" };
    case "int":
      return Number.isSafeInteger(v) ? { ok: true, value: String(v) } : { ok: false, why: "must be a whole number" };
    case "json":
      return typeof v === "object" && !Array.isArray(v) ? { ok: true, value: JSON.stringify(v) } : { ok: false, why: "must be a JSON object" };
    case "ts":
      return typeof v === "string" && !Number.isNaN(Date.parse(v))
        ? { ok: true, value: new Date(v).toISOString() }
        : { ok: false, why: "must be an ISO-8601 timestamp string" };
    case "epoch":
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return { ok: true, value: new Date(v * 1000).toISOString() };
      return typeof v === "string" && !Number.isNaN(Date.parse(v))
        ? { ok: true, value: new Date(v).toISOString() }
        : { ok: false, why: "must be epoch seconds (a whole number) or an ISO-8601 timestamp string" };
    case "text[]":
      return Array.isArray(v) && v.every((x) => typeof x === "string") ? { ok: true, value: v as string[] } : { ok: false, why: "must be an array of strings" };
  }
}

interface Validated {
  section: string;
  index: number;
  label: string;
  values: Clean;
  arrays: Map<string, string[]>;
}

/** Checks the document's shape and every field; collects every problem. */
export function validateDocument(doc: unknown): { records: Validated[]; problems: string[] } {
  const problems: string[] = [];
  const records: Validated[] = [];
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return { records, problems: ["the document must be a JSON object whose keys are seed section names"] };
  }
  for (const key of Object.keys(doc)) {
    if (key === "$schema" || key === "$comment") continue;
    if (!(key in SECTIONS)) problems.push(`unknown section "${key}" (known: ${Object.keys(SECTIONS).join(", ")})`);
  }
  for (const [section, spec] of Object.entries(SECTIONS)) {
    const list = (doc as Rec)[section];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      problems.push(`section ${section} must be an array of records`);
      continue;
    }
    list.forEach((rec: unknown, index) => {
      if (typeof rec !== "object" || rec === null || Array.isArray(rec)) {
        problems.push(`${section}[${index}]: must be a JSON object`);
        return;
      }
      const r = rec as Rec;
      const label = describe(section, index, spec, r);
      const values: Clean = new Map();
      const arrays = new Map<string, string[]>();
      for (const k of Object.keys(r)) {
        if (!(k in spec.fields)) problems.push(`${label}: unknown field "${k}" (fields of ${section}: ${Object.keys(spec.fields).join(", ")})`);
      }
      for (const [name, field] of Object.entries(spec.fields) as [string, FieldSpec][]) {
        const v = r[name];
        if (v === undefined || (v === null && field.required)) {
          if (field.required) problems.push(`${label}: ${name} is required`);
          continue;
        }
        const c = convert(field.type, v);
        if (!c.ok) {
          problems.push(`${label}: ${name} ${c.why}`);
          continue;
        }
        if (Array.isArray(c.value)) arrays.set(name, c.value);
        else values.set(name, c.value);
      }
      records.push({ section, index, label, values, arrays });
    });
  }
  return { records, problems: problems.slice(0, MAX_PROBLEMS) };
}

/** A problem found while writing a record: it aborts the import. */
class RecordError extends Error {}

interface Upsert {
  table: string;
  /** column → [sql type, value] */
  cols: Array<[string, string, Value]>;
  /** Conflict target, e.g. "(id)" or "on constraint x". */
  conflict: string;
  /** Columns never overwritten on conflict (identity, natural keys). */
  keep?: string[];
  returning?: string;
}

type Outcome = "inserted" | "updated" | "unchanged";

async function upsert(tx: SqlQuerier, u: Upsert): Promise<{ outcome: Outcome; row: Record<string, unknown> | undefined }> {
  const names = u.cols.map(([c]) => c);
  // Every value travels as text and is cast in SQL, so both drivers (which
  // serialize typed parameters differently) store exactly the same thing.
  const placeholders = u.cols.map(([, t], i) => `$${i + 1}::text::${t}`);
  const keep = new Set(u.keep ?? []);
  const updatable = names.filter((c) => !keep.has(c));
  const action =
    updatable.length === 0
      ? "do nothing"
      : `do update set ${updatable.map((c) => `${c} = excluded.${c}`).join(", ")}
         where (${updatable.map((c) => `${u.table}.${c}`).join(", ")}) is distinct from (${updatable.map((c) => `excluded.${c}`).join(", ")})`;
  const text = `insert into ${u.table} (${names.join(", ")}) values (${placeholders.join(", ")})
    on conflict ${u.conflict} ${action}
    returning (xmax = 0) as inserted${u.returning ? `, ${u.returning}` : ""}`;
  const rows = await tx.query(
    text,
    u.cols.map(([, , v]) => v),
  );
  const row = rows[0];
  if (!row) return { outcome: "unchanged", row: undefined };
  return { outcome: row.inserted === true ? "inserted" : "updated", row };
}

/** The record's fields mapped to (column, type, value) through the spec. */
function columns(spec: SectionSpec, values: Clean, skip: string[] = []): Array<[string, string, Value]> {
  const out: Array<[string, string, Value]> = [];
  for (const [name, value] of values) {
    const field = spec.fields[name];
    if (!field?.column || field.column.includes(".") || skip.includes(name) || field.type === "text[]") continue;
    out.push([field.column, SQL_TYPE[field.type], value]);
  }
  return out;
}

function keyFromName(name: string): string {
  const key = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9._:-]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 128);
  if (!key) throw new RecordError(`cannot derive a role key from name "${name}"; give "key"`);
  return key;
}

async function one<T>(tx: SqlQuerier, text: string, params: unknown[], missing: string): Promise<T> {
  const rows = await tx.query(text, params);
  if (!rows[0]) throw new RecordError(missing);
  return rows[0] as T;
}

async function roleOrg(tx: SqlQuerier, roleId: Value): Promise<string | null> {
  const r = await one<{ organization_id: string | null }>(
    tx,
    "select organization_id::text as organization_id from roles where id = $1::uuid",
    [roleId],
    `role_id ${roleId} is not a known role`,
  );
  return r.organization_id;
}

async function findRole(tx: SqlQuerier, orgId: Value, keyOrName: string): Promise<string> {
  const r = await one<{ id: string }>(
    tx,
    `select id::text as id from roles
      where (organization_id = $1::uuid or organization_id is null) and (key = $2 or name = $2)
      order by organization_id nulls last, (key = $2) desc limit 1`,
    [orgId, keyOrName],
    `role "${keyOrName}" is neither a role of organization ${orgId} nor a global role`,
  );
  return r.id;
}

async function writeRecord(tx: SqlQuerier, rec: Validated): Promise<Outcome> {
  const spec = SECTIONS[rec.section] as SectionSpec;
  const v = rec.values;
  const get = (k: string): Value => v.get(k) ?? null;
  switch (rec.section) {
    case "TENANT":
    case "Organization":
    case "ORGANIZATION":
    case "User":
    case "USER":
    case "STAFF":
    case "ACCOUNT":
    case "PRINCIPAL":
    case "AVATAR":
    case "MEMBERSHIP":
    case "Role":
    case "ROLE":
    case "Permission":
    case "OWNERSHIP_TRANSFER": {
      const cols = columns(spec, v);
      if (rec.section === "Role" && !v.has("key")) cols.push(["key", "text", keyFromName(get("name") ?? "")]);
      if (rec.section === "ROLE" && !v.has("name")) cols.push(["name", "text", get("key")]);
      return (await upsert(tx, { table: spec.table, cols, conflict: "(id)", keep: ["id"] })).outcome;
    }
    case "CAPABILITY":
      return (
        await upsert(tx, {
          table: "permissions",
          cols: columns(spec, v),
          conflict: "on constraint permissions_organization_key",
          keep: ["organization_id", "key"],
        })
      ).outcome;
    case "RolePermission":
    case "RoleInheritance":
      return (
        await upsert(tx, {
          table: spec.table,
          cols: columns(spec, v),
          conflict: rec.section === "RolePermission" ? "(role_id, permission_id)" : "(role_id, parent_role_id)",
          keep: ["role_id", "permission_id", "parent_role_id"],
        })
      ).outcome;
    case "ROLE_PERMISSION": {
      const org = await roleOrg(tx, get("role_id"));
      const key = get("capability_key");
      const perm = await one<{ id: string }>(
        tx,
        `select id::text as id from permissions where key = $1 and (organization_id = $2::uuid or organization_id is null)
          order by organization_id nulls last limit 1`,
        [key, org],
        `capability_key "${key}" is not a CAPABILITY (or Permission) of the role's organization, nor a global one`,
      );
      return (
        await upsert(tx, {
          table: "role_permissions",
          cols: [
            ["id", "uuid", get("id")],
            ["role_id", "uuid", get("role_id")],
            ["permission_id", "uuid", perm.id],
          ],
          conflict: "(role_id, permission_id)",
          keep: ["id", "role_id", "permission_id"],
        })
      ).outcome;
    }
    case "UserRole": {
      // Seed 000 assignments have no scope: a role applies on its own organization.
      const org = await roleOrg(tx, get("role_id"));
      const cols = columns(spec, v);
      cols.push(["subject_type", "text", "user"], ["scope_type", "text", org ? "organization" : "global"], ["scope_id", "uuid", org]);
      return (
        await upsert(tx, {
          table: "role_assignments",
          cols,
          conflict: "on constraint role_assignments_unique",
          keep: ["subject_type", "subject_id", "role_id", "scope_type", "scope_id"],
        })
      ).outcome;
    }
    case "ROLE_ASSIGNMENT": {
      const subjectType = get("subject_type") ?? "account";
      const accountId = get("account_id");
      const subjectId = get("subject_id");
      if (accountId !== null && subjectId !== null && accountId !== subjectId) {
        throw new RecordError("give account_id or subject_type/subject_id, not both");
      }
      if (accountId !== null && subjectType !== "account") throw new RecordError("account_id requires subject_type account");
      if ((accountId ?? subjectId) === null) throw new RecordError("account_id is required");
      const cols = columns(spec, v, ["account_id", "subject_type", "subject_id"]);
      cols.push(["subject_type", "text", subjectType], ["subject_id", "uuid", accountId ?? subjectId]);
      return (await upsert(tx, { table: "role_assignments", cols, conflict: "(id)", keep: ["id"] })).outcome;
    }
    case "UserOrganizationInfo": {
      const orgId = get("org_id");
      const userId = get("user_id");
      let changed: Outcome = "unchanged";
      const note = (o: Outcome) => {
        if (o === "inserted" && changed === "unchanged") changed = "inserted";
        else if (o !== "unchanged") changed = changed === "inserted" ? "inserted" : "updated";
      };
      const orgCols: Array<[string, string, Value]> = [["id", "uuid", orgId]];
      if (v.has("url_safe_org_name")) orgCols.push(["slug", "text", get("url_safe_org_name")]);
      if (v.has("org_role_structure")) orgCols.push(["role_structure", "text", get("org_role_structure")]);
      if (orgCols.length > 1) {
        const sets = orgCols.slice(1).map(([c], i) => `${c} = $${i + 2}::text`);
        const rows = await tx.query(
          `update organizations set ${sets.join(", ")} where id = $1::uuid
             and (${orgCols
               .slice(1)
               .map(([c]) => c)
               .join(", ")}) is distinct from (${orgCols
               .slice(1)
               .map((_, i) => `$${i + 2}::text`)
               .join(", ")})
           returning id`,
          orgCols.map(([, , x]) => x),
        );
        if (rows.length) note("updated");
        else await one(tx, "select 1 from organizations where id = $1::uuid", [orgId], `org_id ${orgId} is not a known organization`);
      }
      const roleKeys = [...(get("user_role") !== null ? [get("user_role") as string] : []), ...(rec.arrays.get("additional_roles") ?? [])];
      const roleIds: string[] = [];
      for (const k of roleKeys) roleIds.push(await findRole(tx, orgId, k));
      const primary = get("user_role") !== null ? (roleIds[0] as string) : null;
      note(
        (
          await upsert(tx, {
            table: "user_organizations",
            cols: [
              ["user_id", "uuid", userId],
              ["organization_id", "uuid", orgId],
              ...(v.has("user_role") ? ([["primary_role_id", "uuid", primary]] as Array<[string, string, Value]>) : []),
            ],
            conflict: "(user_id, organization_id)",
            keep: ["user_id", "organization_id"],
          })
        ).outcome,
      );
      for (const roleId of roleIds) {
        const org = await roleOrg(tx, roleId);
        note(
          (
            await upsert(tx, {
              table: "role_assignments",
              cols: [
                ["subject_type", "text", "user"],
                ["subject_id", "uuid", userId],
                ["role_id", "uuid", roleId],
                ["scope_type", "text", "organization"],
                ["scope_id", "uuid", org ?? orgId],
              ],
              conflict: "on constraint role_assignments_unique",
              keep: ["subject_type", "subject_id", "role_id", "scope_type", "scope_id"],
            })
          ).outcome,
        );
      }
      return changed;
    }
    case "RateLimitPolicy":
      return (
        await upsert(tx, {
          table: "rate_limit_policies",
          cols: columns(spec, v),
          conflict: v.has("policy_id") ? "(id)" : "(name)",
          keep: ["id"],
        })
      ).outcome;
    case "RateLimitAssignment":
    case "RateLimitCounter": {
      const targets = ["user_id", "org_id", ...(rec.section === "RateLimitCounter" ? ["key_id"] : [])].filter((k) => get(k) !== null);
      if (targets.length !== 1) {
        throw new RecordError(`exactly one of ${rec.section === "RateLimitCounter" ? "key_id, " : ""}user_id, org_id must be given`);
      }
      const natural = rec.section === "RateLimitAssignment" ? ["policy_id", "user_id", "org_id"] : ["policy_id", "key_id", "user_id", "org_id", "window_start"];
      const cols = columns(spec, v);
      for (const c of natural)
        if (!cols.some(([n]) => n === c))
          cols.push([c, c === "policy_id" ? "integer" : c === "key_id" ? "text" : c === "window_start" ? "timestamptz" : "uuid", null]);
      return (
        await upsert(tx, {
          table: spec.table,
          cols,
          conflict: `on constraint ${spec.table === "rate_limit_assignments" ? "rate_limit_assignments_unique" : "rate_limit_counters_unique"}`,
          keep: natural,
        })
      ).outcome;
    }
    default:
      throw new RecordError(`section ${rec.section} has no writer`);
  }
}

/** Explains a database refusal in terms of the record, without SQL text. */
function explain(err: unknown): string {
  if (err instanceof RecordError) return err.message;
  if (err instanceof SqlError) {
    switch (err.code) {
      case "23503":
        return `refers to a record that does not exist${err.detail ? `: ${err.detail.replace(/^Key /, "")}` : ""}`;
      case "23505":
        return `conflicts with an existing record${err.detail ? `: ${err.detail.replace(/^Key /, "")}` : ""}`;
      case "23514":
      case "23P01":
        // Check constraints name the rule; the triggers' messages are plain sentences.
        return err.message;
      case "23502":
        return `misses a required value (${err.message.replace(/^null value in column "(\w+)".*$/, "$1")})`;
      case "22P02":
      case "22007":
      case "22008":
        return `has a value of the wrong form (${err.message})`;
      default:
        break;
    }
  }
  throw err;
}

/** Writes memberships that give up ownership before those that take it. */
function ordered(records: Validated[]): Validated[] {
  const order = Object.keys(SECTIONS);
  return [...records].sort((a, b) => {
    const s = order.indexOf(a.section) - order.indexOf(b.section);
    if (s !== 0) return s;
    if (a.section === "MEMBERSHIP") {
      const ao = a.values.get("owner") === "true" ? 1 : 0;
      const bo = b.values.get("owner") === "true" ? 1 : 0;
      if (ao !== bo) return ao - bo;
    }
    return a.index - b.index;
  });
}

/**
 * Upserts a seed-shaped document in one transaction: everything or nothing.
 * Re-importing the same document changes nothing (and adds no revision).
 */
export async function importDocument(db: SqlClient, doc: unknown, options: { dryRun?: boolean } = {}): Promise<ImportSummary> {
  const { records, problems } = validateDocument(doc);
  if (problems.length > 0) throw new ImportError(problems);
  const sections: Record<string, SectionCounts> = {};
  const DRY_RUN = Symbol("dry run");
  let summary: ImportSummary | undefined;
  const before = await readLatestRevision(db);
  let xid: string | null = null;
  try {
    await db.readWriteTx(async (tx) => {
      // The import numbers its own transaction after commit (authz_stamp, migration 0008).
      await tx.query("select set_config('authz.self_stamp', 'on', true)");
      // Inheritance cycles are checked per statement, so a refusal names its record.
      // Whole-avatar rules (exactly one owner) can only hold once every record
      // is in: they are checked below, after the last record.
      await tx.query("set constraints role_inheritance_valid immediate");
      for (const rec of ordered(records)) {
        let outcome: Outcome;
        try {
          outcome = await writeRecord(tx, rec);
        } catch (err) {
          throw new ImportError([`${rec.label}: ${explain(err)}`]);
        }
        const c = (sections[rec.section] ??= { inserted: 0, updated: 0, unchanged: 0 });
        c[outcome]++;
      }
      await tx.query("select setval(pg_get_serial_sequence('rate_limit_policies', 'id'), greatest((select max(id) from rate_limit_policies), 1))");
      const [tx_] = await tx.query<{ xid: string | null }>(
        "select case when exists (select 1 from authz_changes where xid = pg_current_xact_id()) then pg_current_xact_id()::text end as xid",
      );
      xid = tx_?.xid ?? null;
      summary = { revisionBefore: before.toString(), revisionAfter: before.toString(), sections, dryRun: options.dryRun === true };
      try {
        // Run the remaining deferred checks now, inside the import, so a
        // refusal is an ImportError (and --dry-run reports it too).
        await tx.query("set constraints all immediate");
      } catch (err) {
        throw new ImportError([`the imported records break a rule that spans records: ${explain(err)}`]);
      }
      // The org_role_structure rule (docs/data-model.md, "Role structure") over what the file touched.
      const broken = await singleRoleViolations(tx, "changed");
      if (broken.length > 0) throw new ImportError(broken.map((v) => `the imported records break the role structure rule: ${describeViolation(v)}`));
      if (options.dryRun) throw DRY_RUN;
    });
  } catch (err) {
    if (err !== DRY_RUN) throw err;
    return summary as ImportSummary;
  }
  const done = summary as ImportSummary;
  if (xid !== null) {
    const [row] = await db.query<{ revision: string }>("select authz_stamp($1::text::xid8)::text as revision", [xid]);
    done.revisionAfter = row?.revision ?? done.revisionAfter;
  }
  return done;
}
