import { describe, expect, it } from "vitest";
import { ApiKeyRing, mintApiKey } from "./api-keys.js";

const ready = () => {
  const ring = new ApiKeyRing();
  ring.markComplete();
  return ring;
};

describe("ApiKeyRing: verified keys are remembered until the next reload", () => {
  it("a key is hashed once per reload, however often it is presented", () => {
    const a = mintApiKey("a", ["check"], null);
    const ring = ready();
    ring.replace([a.record]);
    const first = ring.verify(a.key);
    expect(first?.id).toBe(`key:${a.record.id}`);
    for (let i = 0; i < 5; i++) expect(ring.verify(a.key)).toBe(first);
    expect(ring.verifications).toBe(1);
    ring.replace([a.record]);
    expect(ring.verify(a.key)?.id).toBe(`key:${a.record.id}`);
    expect(ring.verifications).toBe(2);
  });

  it("a reload without the key (revocation) refuses it on the next call, though it was remembered", () => {
    const a = mintApiKey("a", ["check"], null);
    const b = mintApiKey("b", ["check"], null);
    const ring = ready();
    ring.replace([a.record, b.record]);
    expect(ring.verify(a.key)).toBeDefined();
    ring.replace([b.record]);
    expect(ring.verify(a.key)).toBeUndefined();
    expect(ring.verify(b.key)).toBeDefined();
  });

  it("a wrong secret for a known id is refused every time and never remembered", () => {
    const a = mintApiKey("a", ["check"], null);
    const forged = `${a.key.slice(0, -1)}${a.key.endsWith("A") ? "B" : "A"}`;
    const ring = ready();
    ring.replace([a.record]);
    for (let i = 0; i < 3; i++) expect(ring.verify(forged)).toBeUndefined();
    expect(ring.verifications).toBe(3);
    expect(ring.verify(a.key)).toBeDefined();
  });

  it("scopes and tenant come from the record the key verified against", () => {
    const t = mintApiKey("t", ["ratelimit"], "00000001-0000-4000-8000-000000000001");
    const ring = ready();
    ring.replace([t.record]);
    ring.verify(t.key);
    const c = ring.verify(t.key);
    expect([...(c?.scopes ?? [])]).toEqual(["ratelimit"]);
    expect(c?.tenantId).toBe("00000001-0000-4000-8000-000000000001");
  });
});
