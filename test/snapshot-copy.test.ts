// The binary COPY load (snapshot-copy.ts, copy-binary.ts) against the
// row-by-row load it replaces on real Postgres: on random datasets, with
// edge values added (infinite and NULL times, text outside ASCII), both loads
// must give the same counts and the same decisions; and the COPY reader must
// read a stream cut at any byte the same as whole.
import { afterAll, describe, expect, it } from "vitest";
import type { ResourceRef, SubjectRef } from "../src/engine/types.js";
import { CopyBinaryReader, type CopyTuple, TextCache } from "../src/store/copy-binary.js";
import { createLogger } from "../src/logger.js";
import { loadSnapshot } from "../src/store/live-engine.js";
import { createPostgresClient } from "../src/store/postgres-client.js";
import { copyStatement } from "../src/store/snapshot-copy.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { generateDataset, insertDataset, randomChecks, rng } from "./support/random-data.js";

const SEED = Number(process.env.ORACLE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const dbs: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

/** Rows no generator writes: times at ±infinity, a role name outside ASCII, a tenant-less organization. */
async function addEdgeRows(t: TestDatabase): Promise<void> {
  await t.raw.unsafe(`
    insert into organizations (id, name, role_structure) values ('e0000000-0000-4000-8000-000000000001', 'Ørg ✓ 組織', 'single_role_in_hierarchy');
    insert into users (id, logical_key) values ('e0000000-0000-4000-8000-000000000002', 'edge-user');
    insert into roles (id, organization_id, key, name) values ('e0000000-0000-4000-8000-000000000003', 'e0000000-0000-4000-8000-000000000001', 'edge', 'Rôle ✓');
    insert into permissions (id, organization_id, key) values ('e0000000-0000-4000-8000-000000000004', 'e0000000-0000-4000-8000-000000000001', 'doc.edge');
    insert into role_permissions (role_id, permission_id) values ('e0000000-0000-4000-8000-000000000003', 'e0000000-0000-4000-8000-000000000004');
    insert into role_assignments (subject_type, subject_id, role_id, scope_type, scope_id, valid_until)
      values ('user', 'e0000000-0000-4000-8000-000000000002', 'e0000000-0000-4000-8000-000000000003', 'organization', 'e0000000-0000-4000-8000-000000000001', 'infinity');
  `);
}

/** A CopyData message of the protocol: 'd', a 32-bit length counting itself, the data. */
function frame(data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = 0x64;
  head.writeUInt32BE(data.length + 4, 1);
  return Buffer.concat([head, data]);
}

/** The data of a run of CopyData messages, joined. */
function framesData(frames: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let pos = 0; pos < frames.length; ) {
    expect(frames[pos]).toBe(0x64);
    const end = pos + 1 + frames.readUInt32BE(pos + 1);
    out.push(frames.subarray(pos + 5, end));
    pos = end;
  }
  return Buffer.concat(out);
}

describe("snapshot load by binary COPY", () => {
  it(`gives the same engine as the row-by-row load (seed ${SEED})`, async () => {
    const r = rng(SEED);
    for (let ds = 0; ds < 2; ds++) {
      const t = await freshDatabase();
      dbs.push(t);
      const data = generateDataset(r, { assignments: 400, memberships: 120 });
      await insertDataset(t.raw, data);
      if (ds === 0) await addEdgeRows(t);
      const viaCopy = await loadSnapshot(t.client, { via: "copy" });
      const viaRows = await loadSnapshot(t.client, { via: "rows" });
      expect(viaCopy.revision).toBe(viaRows.revision);
      expect(viaCopy.stats()).toEqual(viaRows.stats());
      expect(viaCopy.memory()).toEqual(viaRows.memory());
      const checks = randomChecks(r, data, 3000);
      checks.push({
        subjectType: "user",
        subjectId: "e0000000-0000-4000-8000-000000000002",
        permission: "doc.edge",
        resourceType: "organization",
        resourceId: "e0000000-0000-4000-8000-000000000001",
      });
      const now = data.now.getTime();
      let differ = 0;
      for (const c of checks) {
        const subject = { type: c.subjectType, id: c.subjectId } as SubjectRef;
        const resource = { type: c.resourceType, id: c.resourceId } as ResourceRef;
        const a = viaCopy.check(subject, c.permission, resource, now, true);
        const b = viaRows.check(subject, c.permission, resource, now, true);
        if (JSON.stringify(a) !== JSON.stringify(b)) differ++;
        expect(JSON.stringify(viaCopy.list(subject, undefined, now))).toBe(JSON.stringify(viaRows.list(subject, undefined, now)));
      }
      expect(differ).toBe(0);
      if (ds === 0) {
        const edge = viaCopy.check(
          { type: "user", id: "e0000000-0000-4000-8000-000000000002" },
          "doc.edge",
          { type: "organization", id: "e0000000-0000-4000-8000-000000000001" },
          now,
        );
        expect(edge.allowed).toBe(true);
      }
    }
  });

  it("reads a COPY stream cut at any byte as it reads it whole", async () => {
    const t = await freshDatabase();
    dbs.push(t);
    await insertDataset(t.raw, generateDataset(rng(7), { assignments: 30 }));
    await addEdgeRows(t);
    for (const table of ["role_assignments", "organizations", "roles"] as const) {
      const chunks: Buffer[] = [];
      const copyOut = t.client.copyOut;
      if (!copyOut) throw new Error("the Postgres client streams COPY");
      await copyOut(copyStatement(table), (c) => chunks.push(Buffer.from(c)));
      const frames = Buffer.concat(chunks);
      const all = framesData(frames);
      const read = (pieces: Buffer[], asFrames = false): string[] => {
        const out: string[] = [];
        const reader = new CopyBinaryReader((tu: CopyTuple) => {
          const f: string[] = [];
          for (let i = 0; i < tu.n; i++) f.push(tu.isNull(i) ? "NULL" : tu.buf.toString("hex", tu.at(i), tu.at(i) + tu.length(i)));
          out.push(f.join("|"));
        });
        for (const p of pieces) asFrames ? reader.pushFrames(p) : reader.push(p);
        reader.end();
        return out;
      };
      const whole = read([all]);
      expect(whole.length).toBeGreaterThan(0);
      // As the driver hands the messages over, and as PostgreSQL could cut them (a tuple across two messages).
      expect(read([frames], true)).toEqual(whole);
      // Every cut point of a two-piece stream, and one byte at a time; the same cut between two messages.
      for (let cut = 0; cut <= all.length; cut += Math.max(1, Math.floor(all.length / 257))) {
        expect(read([all.subarray(0, cut), all.subarray(cut)])).toEqual(whole);
        expect(read([Buffer.concat([frame(all.subarray(0, cut)), frame(all.subarray(cut))])], true)).toEqual(whole);
      }
      expect(read([...all].map((b) => Buffer.of(b)))).toEqual(whole);
      expect(
        read(
          [...all].map((b) => frame(Buffer.of(b))),
          true,
        ),
      ).toEqual(whole);
    }
  });

  it("a COPY whose data the reader refuses fails, and leaves its connection ready for the next statement", async () => {
    const t = await freshDatabase();
    dbs.push(t);
    await insertDataset(t.raw, generateDataset(rng(11), { assignments: 2000 }));
    const one = createPostgresClient({ url: t.url, poolMax: 1, logger: createLogger("silent") });
    try {
      const refused = await one
        .readWriteTx(async (tx) => {
          await tx.copyOut?.(copyStatement("role_assignments"), () => {
            throw new Error("refused by the reader");
          });
        })
        .catch((e: unknown) => e);
      expect((refused as Error).message).toBe("refused by the reader");
      expect(await one.query("select 1 as x")).toEqual([{ x: 1 }]);
      const [count] = await t.raw<{ n: number }[]>`select count(*)::int as n from role_assignments`;
      // A few hundred KB of COPY: messages cut across socket reads, completed by the patched driver.
      const viaCopy = await loadSnapshot(one);
      expect(viaCopy.stats().assignments).toBe(count?.n);
      const viaRows = await loadSnapshot(one, { via: "rows" });
      expect(viaCopy.stats()).toEqual(viaRows.stats());
      expect(viaCopy.memory()).toEqual(viaRows.memory());
    } finally {
      await one.close();
    }
  });

  it("reads repeated texts through its cache as their own texts, whatever shares a slot", () => {
    const cache = new TextCache();
    const texts = Array.from({ length: 2000 }, (_, i) => (i % 3 === 0 ? `rôle.${i}` : `doc.p${i % 700}`));
    texts.push("x".repeat(65), "", "✓");
    const buf = Buffer.from(`--${texts.join("")}`, "utf8");
    const at: number[] = [];
    for (let i = 0, o = 2; i < texts.length; o += Buffer.byteLength(texts[i] as string), i++) at.push(o);
    let wrong = 0;
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < texts.length; i++) {
        if (cache.get(buf, at[i] as number, Buffer.byteLength(texts[i] as string)) !== texts[i]) wrong++;
      }
    }
    expect(wrong).toBe(0);
  });

  it("refuses a stream that is not binary COPY, or that stops before its end", () => {
    const reader = new CopyBinaryReader(() => {});
    expect(() => reader.push(Buffer.from("not a binary copy stream at all"))).toThrow(/signature/);
    const header = Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]);
    const cut = new CopyBinaryReader(() => {});
    cut.push(header);
    expect(() => cut.end()).toThrow(/before its end marker/);
    expect(() => new CopyBinaryReader(() => {}).pushFrames(Buffer.from("not a CopyData message"))).toThrow(/not a CopyData message/);
    expect(() => new CopyBinaryReader(() => {}).pushFrames(frame(header).subarray(0, 10))).toThrow(/cut short/);
  });
});
