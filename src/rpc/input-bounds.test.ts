import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ManageRolesRequestSchema } from "../../gen/authz/v1/admin_service_pb.js";
import { CheckBulkRequestSchema } from "../../gen/authz/v1/permission_service_pb.js";
import { CheckRequestSchema } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { RateLimitRequestSchema } from "../../gen/envoy/service/ratelimit/v3/rls_pb.js";
import { AUTHZEN_BODY_LIMITS } from "./authzen.js";
import { INPUT_LIMITS, inputFault, JSON_LIMITS, jsonFault, stringFault } from "./input-bounds.js";

const fault = (e: ReturnType<typeof inputFault>) => (e ? { reason: e.reason, field: e.metadata["field"], message: e.message } : undefined);

describe("strings", () => {
  it("refuses NUL and lone surrogates, and counts the limit in UTF-8 bytes", () => {
    expect(stringFault("ok", 10, undefined)).toBeUndefined();
    expect(stringFault("a\u0000b", 10, undefined)?.reason).toBe("INVALID_STRING");
    expect(stringFault("a\ud800", 10, undefined)?.reason).toBe("INVALID_STRING");
    expect(stringFault("👍", 10, undefined)).toBeUndefined(); // a surrogate pair is text
    expect(stringFault("é".repeat(5), 10, undefined)).toBeUndefined(); // 10 bytes
    expect(stringFault("é".repeat(6), 10, undefined)?.reason).toBe("FIELD_TOO_LONG"); // 12 bytes, 6 characters
  });
});

describe("decoded requests", () => {
  it("names the field path through lists and oneofs, and never quotes the value", () => {
    const req = create(ManageRolesRequestSchema, {
      mutations: [
        { mutation: { case: "deleteRole", value: { ref: { case: "id", value: "x" } } } },
        { mutation: { case: "upsertRole", value: { key: { organizationId: "o", key: "k" }, description: "secret\u0000" } } },
      ],
    });
    expect(fault(inputFault(ManageRolesRequestSchema, req))).toEqual({
      reason: "INVALID_STRING",
      field: "mutations[1].upsert_role.description",
      message: "mutations[1].upsert_role.description contains a NUL character (U+0000), which is not allowed",
    });
    const key = create(ManageRolesRequestSchema, { idempotencyKey: "k".repeat(INPUT_LIMITS.stringBytes + 1) });
    expect(fault(inputFault(ManageRolesRequestSchema, key))).toMatchObject({ reason: "FIELD_TOO_LONG", field: "idempotency_key" });
    expect(inputFault(ManageRolesRequestSchema, create(ManageRolesRequestSchema, {}))).toBeUndefined();
  });

  it("counts lists, except those their handler counts with its own message", () => {
    const entries = Array.from({ length: INPUT_LIMITS.items + 1 }, () => ({ key: "k", value: "v" }));
    const rl = create(RateLimitRequestSchema, { descriptors: [{ entries: [] }, { entries }] });
    expect(fault(inputFault(RateLimitRequestSchema, rl))).toMatchObject({ reason: "TOO_MANY_ITEMS", field: "descriptors[1].entries" });
    const many = create(RateLimitRequestSchema, { descriptors: Array.from({ length: 2000 }, () => ({})) });
    expect(inputFault(RateLimitRequestSchema, many)).toBeUndefined();
    const bulk = create(CheckBulkRequestSchema, { items: Array.from({ length: 2000 }, () => ({ permission: "p" })) });
    expect(inputFault(CheckBulkRequestSchema, bulk)).toBeUndefined();
  });

  it("Envoy's HTTP request: 64 KiB header values, up to 1024 headers; map keys in the path are short and printable", () => {
    const http = (headers: Record<string, string>) => create(CheckRequestSchema, { attributes: { request: { http: { method: "GET", path: "/", headers } } } });
    expect(inputFault(CheckRequestSchema, http({ cookie: "c".repeat(60_000) }))).toBeUndefined();
    expect(fault(inputFault(CheckRequestSchema, http({ cookie: "c".repeat(70_000) })))).toMatchObject({
      reason: "FIELD_TOO_LONG",
      field: 'attributes.request.http.headers["cookie"]',
    });
    const odd = `x-${"\n".repeat(3)}${"y".repeat(60)}`;
    expect(fault(inputFault(CheckRequestSchema, http({ [odd]: "\u0000" })))?.field).toBe(
      'attributes.request.http.headers["x-???yyyyyyyyyyyyyyyyyyyyyyyyyyy…"]',
    );
    const headers = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`h${i}`, "v"]));
    expect(fault(inputFault(CheckRequestSchema, http(headers)))).toMatchObject({ reason: "TOO_MANY_ITEMS", field: "attributes.request.http.headers" });
  });

  it("walks JSON-ish data (Struct in metadata): strings, keys, sizes and nesting", () => {
    const meta = (jwt: Record<string, unknown>) =>
      create(CheckRequestSchema, { attributes: { metadataContext: { filterMetadata: { "envoy.filters.http.jwt_authn": jwt as never } } } });
    expect(inputFault(CheckRequestSchema, meta({ jwt_payload: { sub: "u", groups: ["a", "b"] } }))).toBeUndefined();
    expect(fault(inputFault(CheckRequestSchema, meta({ jwt_payload: { groups: ["a", "b\u0000"] } })))).toMatchObject({
      reason: "INVALID_STRING",
      field: 'attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].jwt_payload.groups[1]',
    });
    let deep: unknown = "x";
    for (let i = 0; i < INPUT_LIMITS.jsonDepth + 1; i++) deep = [deep];
    expect(fault(inputFault(CheckRequestSchema, meta({ deep })))?.reason).toBe("TOO_DEEP");
  });
});

describe("JSON bodies (AuthZEN)", () => {
  it("properties and context take JSON-ish strings; the rest 4 KiB; evaluations is counted by the handler", () => {
    const base = { subject: { type: "user", id: "u" }, action: { name: "a" }, resource: { type: "organization", id: "o" } };
    expect(jsonFault({ ...base, context: { note: "n".repeat(10_000) } }, AUTHZEN_BODY_LIMITS)).toBeUndefined();
    expect(jsonFault({ ...base, subject: { type: "user", id: "i".repeat(5000) } }, AUTHZEN_BODY_LIMITS)?.message).toBe("subject.id is longer than 4096 bytes");
    expect(jsonFault({ evaluations: Array.from({ length: 1500 }, () => ({})) }, AUTHZEN_BODY_LIMITS)).toBeUndefined();
    expect(jsonFault({ list: Array.from({ length: 1500 }, () => 1) }, AUTHZEN_BODY_LIMITS)?.reason).toBe("TOO_MANY_ITEMS");
    expect(jsonFault({ "bad\u0000key": 1 }, JSON_LIMITS)?.reason).toBe("INVALID_STRING");
  });

  it("a body of more values than a request may hold is TOO_MANY_ELEMENTS, however it is spread", () => {
    const wide = { evaluations: Array.from({ length: 30_000 }, () => ({ a: 1 })) };
    expect(jsonFault(wide, AUTHZEN_BODY_LIMITS)?.reason).toBe("TOO_MANY_ELEMENTS");
  });
});
