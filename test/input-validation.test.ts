// Input that passes the byte-level bounds (test/input-bounds.test.ts) but is
// still not valid: tampered page tokens, out-of-range Timestamps, page sizes,
// non-finite Struct numbers, and what NOT_FOUND messages quote of the input.
// Each case runs against the real server over a socket (gRPC, and Connect
// where cheap) and expects INVALID_ARGUMENT naming the field, never INTERNAL
// or SQL text.
import { readFileSync } from "node:fs";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListRateLimitPoliciesRequestSchema, ListOrganizationsRequestSchema, ListUsersRequestSchema } from "../gen/authz/v1/directory_service_pb.js";
import { mintApiKey } from "../src/auth/api-keys.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { type App, createApp } from "../src/main.js";
import { projectPath } from "../src/paths.js";
import { importDocument } from "../src/store/import.js";
import { freshDatabase, type TestDatabase } from "./support/db.js";
import { type Answer, connectUnary, grpcCall } from "./support/edge-calls.js";

let t: TestDatabase;
let app: App;
let base = "";
let key = "";
let client: grpc.Client;
const auth = () => ({ "x-api-key": key });

beforeAll(async () => {
  t = await freshDatabase();
  await importDocument(t.client, JSON.parse(readFileSync(projectPath("examples/demo.json"), "utf8")));
  const minted = mintApiKey("input-admin", ["check", "ratelimit", "admin"], null);
  await t.raw`insert into api_keys (id, name, secret_sha256, scopes) values (${minted.record.id}, 'input-admin', ${minted.record.secretSha256}, ${minted.record.scopes})`;
  key = minted.key;
  app = createApp(
    loadConfig({ DATABASE_URL: t.url, AUTHZ_AUTH: "on", AUTHZ_HOST: "127.0.0.1", AUTHZ_GRPC_PORT: "0", AUTHZ_HTTP_PORT: "0" }),
    createLogger("silent"),
  );
  const ports = await app.listen();
  await app.ready;
  base = `http://127.0.0.1:${ports.httpPort}`;
  client = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  client?.close();
  await app?.stop();
  await t?.drop();
});

/** A gRPC call with a message built from its schema. */
const call = <D extends DescMessage>(path: string, schema: D, init: MessageInitShape<D>): Promise<Answer> =>
  grpcCall(client, path, toBinary(schema, create(schema, init)), auth());

/** A Connect JSON call; the answer's body when it succeeds. */
async function connectJson(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...auth() },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** No SQL or driver text in a message a caller sees. */
const SQL_TEXT = /sql|syntax|select |where |uuid:|type integer|out of range for type|22P02|22003|22008|22009/i;

function expectInvalid(a: Answer, field: string, reason = "INVALID_ARGUMENT"): void {
  expect({ code: a.code, reason: a.reason, field: a.metadata?.["field"] }).toEqual({ code: "INVALID_ARGUMENT", reason, field });
  expect(a.message).toContain(field);
  expect(a.message).not.toMatch(SQL_TEXT);
}

describe("directory page tokens", () => {
  const FOREIGN = "page_token is not a token of this request";
  const tamper = (token: string, k: unknown): string => {
    const t = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Record<string, unknown>;
    return Buffer.from(JSON.stringify({ ...t, k })).toString("base64url");
  };
  async function firstToken(rpc: string): Promise<string> {
    const page = await connectJson(`/authz.v1.DirectoryService/${rpc}`, { pageSize: 1 });
    expect(page.status).toBe(200);
    const token = page.body["nextPageToken"];
    expect(typeof token).toBe("string");
    return token as string;
  }

  const cases: Array<[string, DescMessage, unknown[]]> = [
    ["ListUsers", ListUsersRequestSchema, ["zzz", "", "\u0000", 5, null, "00000003-0000-4000-8000-00000000000"]],
    ["ListOrganizations", ListOrganizationsRequestSchema, ["abc", "' or 1=1 --"]],
    ["ListRateLimitPolicies", ListRateLimitPoliciesRequestSchema, ["abc", "1.5", "0x10", "1e3", "99999999999999999999", "2147483648", " 1", ""]],
  ];
  for (const [rpc, schema, keys] of cases) {
    it(`${rpc}: a token whose key is not a key of the listing is refused like a foreign token`, async () => {
      const token = await firstToken(rpc);
      // The untouched token still pages.
      expect((await call(`/authz.v1.DirectoryService/${rpc}`, schema, { pageSize: 1, pageToken: token } as never)).code).toBe("OK");
      for (const k of keys) {
        const a = await call(`/authz.v1.DirectoryService/${rpc}`, schema, { pageSize: 1, pageToken: tamper(token, k) } as never);
        expectInvalid(a, "page_token");
        expect(a.message).toContain(FOREIGN);
      }
      const viaConnect = await connectUnary(
        `${base}/authz.v1.DirectoryService/${rpc}`,
        JSON.stringify({ pageSize: 1, pageToken: tamper(token, keys[0]) }),
        "application/json",
        auth(),
      );
      expectInvalid(viaConnect, "page_token");
    });
  }
});
