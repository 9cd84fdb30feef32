// The followed tables read by binary COPY for a snapshot load (real Postgres):
// the rows arrive as one stream that PostgreSQL fills while node builds
// (no cursor round trip per batch), and no driver row object or text is made
// per row. role_assignments, users, roles, permissions and the id-only tables
// go into the builder as words (their ids never become text; repeated key
// texts are one string each); the other, small tables become the same row
// objects the row-by-row load hands over.

import { AB_ACTIVE, AB_HAS_SCOPE, type AssignmentBatch } from "../engine/grant-index.js";
import { UW_ENABLED, UW_LOCKED } from "../engine/directory-rows.js";
import type { FollowedTable } from "../engine/rows.js";
import { ID_TABLE_NULLABLE, type IdTable, type SnapshotBuilder } from "../engine/snapshot.js";
import { CopyBinaryReader, type CopyTuple, TextCache } from "./copy-binary.js";

type ColType = "uuid" | "text" | "bool" | "time" | "int4";
type Columns = readonly (readonly [name: string, type: ColType])[];

/** What loadSnapshot reads of each table (SNAPSHOT_COLUMNS' columns), with the type each is sent as. */
export const COPY_COLUMNS: Record<FollowedTable, Columns> = {
  tenants: [["id", "uuid"]],
  organizations: [
    ["id", "uuid"],
    ["tenant_id", "uuid"],
    ["name", "text"],
    ["slug", "text"],
    ["role_structure", "text"],
  ],
  users: [
    ["id", "uuid"],
    ["locked", "bool"],
    ["enabled", "bool"],
  ],
  staff: [["id", "uuid"]],
  accounts: [
    ["id", "uuid"],
    ["organization_id", "uuid"],
    ["active", "bool"],
  ],
  principals: [
    ["id", "uuid"],
    ["account_id", "uuid"],
    ["subject_type", "text"],
    ["subject_id", "uuid"],
    ["active", "bool"],
    ["accepted_at", "time"],
    ["valid_until", "time"],
  ],
  avatars: [
    ["id", "uuid"],
    ["organization_id", "uuid"],
    ["active", "bool"],
  ],
  memberships: [
    ["id", "uuid"],
    ["principal_id", "uuid"],
    ["avatar_id", "uuid"],
    ["owner", "bool"],
    ["active", "bool"],
    ["accepted_at", "time"],
    ["valid_until", "time"],
  ],
  roles: [
    ["id", "uuid"],
    ["organization_id", "uuid"],
    ["key", "text"],
    ["name", "text"],
  ],
  permissions: [
    ["id", "uuid"],
    ["organization_id", "uuid"],
    ["key", "text"],
  ],
  role_permissions: [
    ["role_id", "uuid"],
    ["permission_id", "uuid"],
  ],
  role_inheritance: [
    ["role_id", "uuid"],
    ["parent_role_id", "uuid"],
  ],
  // Read as words by readAssignments, in this order.
  role_assignments: [
    ["id", "uuid"],
    ["subject_type", "text"],
    ["subject_id", "uuid"],
    ["role_id", "uuid"],
    ["scope_type", "text"],
    ["scope_id", "uuid"],
    ["active", "bool"],
    ["valid_until", "time"],
  ],
  user_organizations: [
    ["user_id", "uuid"],
    ["organization_id", "uuid"],
    ["primary_role_id", "uuid"],
  ],
  rate_limit_policies: [
    ["id", "int4"],
    ["name", "text"],
    ["scope", "text"],
    ["limit_count", "int4"],
    ["window_sec", "int4"],
    ["algorithm", "text"],
    ["failure_mode", "text"],
    ["shadow", "bool"],
    ["description", "text"],
  ],
  rate_limit_assignments: [
    ["id", "text"], // bigint, kept exact as text (as the row-by-row load reads it)
    ["policy_id", "int4"],
    ["user_id", "uuid"],
    ["org_id", "uuid"],
  ],
};

/** The COPY statement for a table: every column cast to the type it is decoded as. */
export function copyStatement(table: FollowedTable): string {
  const cols = COPY_COLUMNS[table].map(([name, type]) => `${name}::${type === "time" ? "timestamptz" : type}`).join(", ");
  return `copy (select ${cols} from ${table}) to stdout with (format binary)`;
}

/** Rows handed to the builder at a time. */
const ROW_BATCH = 4096;
/** Rows read as words handed to the builder at a time: its passes over a batch overlap the rows' cache misses, and what they touch stays in the cache until used. */
const WORD_BATCH = 256;

/** Streams one table into the builder by binary COPY. */
export async function copyTableInto(
  copyOut: (text: string, onFrames: (frames: Buffer) => void) => Promise<void>,
  table: FollowedTable,
  builder: SnapshotBuilder,
): Promise<void> {
  const onTuple =
    table === "role_assignments"
      ? assignmentReader(builder)
      : table === "users"
        ? userReader(builder)
        : table === "permissions"
          ? permissionReader(builder)
          : table === "roles"
            ? roleReader(builder)
            : isIdTable(table)
              ? idRowReader(table, builder)
              : rowReader(table, builder);
  const reader = new CopyBinaryReader(onTuple.tuple);
  await copyOut(copyStatement(table), (frames) => reader.pushFrames(frames));
  reader.end();
  onTuple.flush();
}

const isIdTable = (t: FollowedTable): t is IdTable => t in ID_TABLE_NULLABLE;

/** Rows of ids only, as words (no text made or parsed), a batch at a time. */
function idRowReader(table: IdTable, builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const cols = COPY_COLUMNS[table];
  const k = cols.length;
  const words = new Uint32Array(4 * k * WORD_BATCH);
  const rowNulls = new Uint8Array(WORD_BATCH);
  const nullable = ID_TABLE_NULLABLE[table];
  let n = 0;
  const flush = () => {
    if (n > 0) builder.loadIds(table, words, rowNulls, n);
    n = 0;
  };
  return {
    tuple(t) {
      let nulls = 0;
      for (let i = 0; i < k; i++) {
        const o = 4 * (k * n + i);
        if (t.isNull(i) && (nullable & (1 << i)) !== 0) nulls |= 1 << i;
        else if (!t.uuidInto(i, words, o)) throw new Error(`${table}: ${(cols[i] as Columns[number])[0]} is not a UUID`);
      }
      rowNulls[n] = nulls;
      if (++n === WORD_BATCH) flush();
    },
    flush,
  };
}

/** Permissions with their ids as words (only the key becomes text, one string per distinct key while the cache holds it). */
function permissionReader(builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const words = new Uint32Array(8);
  const keys = new TextCache();
  return {
    tuple(t) {
      const hasOrg = idAndOrgWords(t, words, "permissions");
      builder.loadPermission(words, hasOrg, t.cachedText(2, keys) ?? "");
    },
    flush() {},
  };
}

/** Roles with their ids as words (key and name as texts, one string per distinct value while the cache holds it). */
function roleReader(builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const words = new Uint32Array(8);
  const texts = new TextCache();
  return {
    tuple(t) {
      const hasOrg = idAndOrgWords(t, words, "roles");
      builder.loadRole(words, hasOrg, t.cachedText(2, texts) ?? "", t.cachedText(3, texts) ?? "");
    },
    flush() {},
  };
}

/** A row's id (field 0) into words[0-3] and its organization (field 1) into words[4-7]; whether it has one. */
function idAndOrgWords(t: CopyTuple, words: Uint32Array, table: string): boolean {
  if (!t.uuidInto(0, words, 0)) throw new Error(`${table}: id is not a UUID`);
  const hasOrg = !t.isNull(1);
  if (hasOrg && !t.uuidInto(1, words, 4)) throw new Error(`${table}: organization_id is not a UUID`);
  return hasOrg;
}

/** Users as words (their ids never become text). */
function userReader(builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const words = new Uint32Array(4 * WORD_BATCH);
  const flags = new Uint8Array(WORD_BATCH);
  let n = 0;
  const flush = () => {
    if (n > 0) builder.loadUsers(words, flags, n);
    n = 0;
  };
  return {
    tuple(t) {
      if (!t.uuidInto(0, words, 4 * n)) throw new Error("users: id is not a UUID");
      flags[n] = (t.bool(1) ? UW_LOCKED : 0) | (t.bool(2) ? UW_ENABLED : 0);
      if (++n === WORD_BATCH) flush();
    },
    flush,
  };
}

function rowReader(table: FollowedTable, builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const cols = COPY_COLUMNS[table];
  let batch: Record<string, unknown>[] = [];
  const flush = () => {
    if (batch.length > 0) builder.load(table, batch);
    batch = [];
  };
  return {
    tuple(t) {
      const row: Record<string, unknown> = {};
      for (let i = 0; i < cols.length; i++) {
        const [name, type] = cols[i] as Columns[number];
        row[name] = field(t, i, type);
      }
      batch.push(row);
      if (batch.length === ROW_BATCH) flush();
    },
    flush,
  };
}

function field(t: CopyTuple, i: number, type: ColType): unknown {
  if (t.isNull(i)) return null;
  switch (type) {
    case "uuid":
      return t.uuid(i);
    case "text":
      return t.text(i);
    case "bool":
      return t.bool(i);
    case "time":
      return t.time(i);
    case "int4":
      return t.int4(i);
  }
}

/** The subject and scope types a grant names, matched on their bytes (no string per row). */
const KIND_TEXTS = ["user", "organization", "global", "tenant", "account", "principal", "staff", "avatar"] as const;
const KIND_BYTES = KIND_TEXTS.map((k) => Buffer.from(k, "latin1"));

/** Field i as one of the known kind texts when it is one (the same string each time), else decoded. */
function kindText(t: CopyTuple, i: number): string {
  const at = t.at(i);
  const buf = t.buf;
  outer: for (let k = 0; k < KIND_BYTES.length; k++) {
    const want = KIND_BYTES[k] as Buffer;
    if (!t.hasLength(i, want.length)) continue;
    for (let j = 0; j < want.length; j++) if (buf[at + j] !== want[j]) continue outer;
    return KIND_TEXTS[k] as string;
  }
  return t.text(i) ?? "";
}

function assignmentReader(builder: SnapshotBuilder): { tuple(t: CopyTuple): void; flush(): void } {
  const B = WORD_BATCH;
  const batch: AssignmentBatch = {
    n: 0,
    words: new Uint32Array(16 * B),
    subjectType: new Array<string>(B).fill(""),
    scopeType: new Array<string>(B).fill(""),
    flags: new Uint8Array(B),
    validUntil: new Float64Array(B),
  };
  const w = batch.words;
  const words = (t: CopyTuple, i: number, o: number, what: string) => {
    if (!t.uuidInto(i, w, o)) throw new Error(`role_assignments: ${what} is not a UUID`);
  };
  const flush = () => {
    if (batch.n > 0) builder.loadAssignments(batch);
    batch.n = 0;
  };
  return {
    tuple(t) {
      const i = batch.n;
      const o = 16 * i;
      words(t, 0, o, "id");
      batch.subjectType[i] = kindText(t, 1);
      words(t, 2, o + 4, "subject_id");
      words(t, 3, o + 8, "role_id");
      batch.scopeType[i] = kindText(t, 4);
      const hasScope = !t.isNull(5);
      if (hasScope) words(t, 5, o + 12, "scope_id");
      batch.flags[i] = (hasScope ? AB_HAS_SCOPE : 0) | (t.bool(6) ? AB_ACTIVE : 0);
      batch.validUntil[i] = t.time(7) ?? Number.POSITIVE_INFINITY;
      batch.n = i + 1;
      if (batch.n === B) flush();
    },
    flush,
  };
}
