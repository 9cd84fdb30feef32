// Fault: a transaction's connection is reset (TCP RST) while a statement is
// in flight, and the same pooled connection then serves the next transaction.
//
// This is the storm's wedged write (docs/faults.md, "A reset connection's
// leftover statement"), reproduced deterministically: on a reset, Node emits the
// socket's 'error' before its 'close' (a loop turn apart). In between, the
// failed transaction queues its ROLLBACK on the connection; before the patch,
// postgres.js settled only what was in flight at the 'error', kept that
// ROLLBACK in its in-flight queue, and the next session took it for its own
// statement in flight: the next transaction's statements were answered one
// behind, and a describe-first statement's Bind/Execute was never sent (the
// backend sat 'active' in ClientRead, past every server-side timeout).
import * as net from "node:net";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../support/db.js";
import { until } from "../support/fault.js";

let t: TestDatabase;
let proxy: net.Server;
const pairs: Array<{ client: net.Socket; upstream: net.Socket }> = [];

/** A TCP proxy to the test database that can reset its client sides. */
async function startProxy(target: URL): Promise<number> {
  proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
    pairs.push({ client, upstream });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return (proxy.address() as net.AddressInfo).port;
}

function resetClients(): number {
  let n = 0;
  for (const p of pairs.splice(0)) {
    if (p.client.destroyed) continue;
    p.client.resetAndDestroy();
    p.upstream.destroy();
    n++;
  }
  return n;
}

beforeAll(async () => {
  t = await freshDatabase({ empty: true });
}, 30_000);

afterAll(async () => {
  await new Promise((resolve) => proxy?.close(resolve));
  await t?.drop();
});

/** Settles within ms or says it did not. */
function within<T>(p: Promise<T>, ms: number): Promise<{ settled: true; value?: T; error?: unknown } | { settled: false }> {
  return Promise.race([
    p.then(
      (value) => ({ settled: true as const, value }),
      (error) => ({ settled: true as const, error }),
    ),
    new Promise<{ settled: false }>((resolve) => setTimeout(() => resolve({ settled: false }), ms).unref()),
  ]);
}

describe("postgres.js: a connection reset in a transaction", () => {
  it("leaves nothing of the dead session behind: the next transaction on the same connection answers", async () => {
    const target = new URL(t.url);
    const port = await startProxy(target);
    const via = new URL(t.url);
    via.hostname = "127.0.0.1";
    via.port = String(port);
    for (let round = 0; round < 3; round++) {
      // A fresh pool of one connection: the transaction opens the connection itself (its
      // statements are then written straight to the socket), and the next one reuses it.
      const sql = postgres(via.toString(), { max: 1, onnotice: () => {}, connect_timeout: 5 });
      try {
        const tag = `driver-reset-${round}-${process.pid}`;
        const doomed = sql.begin(async (tx) => {
          await tx`select 1`;
          await tx.unsafe(`select pg_sleep(30) /* ${tag} */`);
        });
        await until(
          async () => (await t.raw`select 1 from pg_stat_activity where query like ${`%${tag}%`} and pid <> pg_backend_pid()`).length > 0,
          10_000,
          "the transaction's statement running",
        );
        expect(resetClients(), "connections reset").toBeGreaterThanOrEqual(1);
        const failed = await within(doomed, 10_000);
        expect(failed.settled && "error" in failed && failed.error !== undefined, "the reset transaction fails").toBe(true);

        // The next transaction on the same (reconnected) connection: a plain statement, then one with
        // parameters (describe-first on a new session). Before the patch it never settled.
        const next = await within(
          sql.begin(async (tx) => {
            const [a] = await tx`select ${round}::int as a`;
            const [b] = await tx`select ${"x"}::text || ${round}::text as b`;
            return [a?.a, b?.b];
          }),
          10_000,
        );
        expect(next, `round ${round}: the next transaction on the reset connection`).toEqual({ settled: true, value: [round, `x${round}`] });
      } finally {
        await sql.end({ timeout: 2 });
        // The killed sleep's backend, if the server has not noticed its client is gone yet.
        await t.raw`select pg_terminate_backend(pid) from pg_stat_activity where query like ${"%driver-reset-%"} and pid <> pg_backend_pid()`;
      }
    }
  }, 90_000);
});
