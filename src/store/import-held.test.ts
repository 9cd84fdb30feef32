// The Bloom filter behind restore mode's held-back writes (import-held.ts):
// it must never miss a key added before (a row written twice would go in
// twice), and should rarely take a new key for an old one.
import { describe, expect, it } from "vitest";
import { Seen } from "./import-held.js";

const key = (n: number) => `user|00000003-0000-4000-8000-${n.toString(16).padStart(12, "0")}|organization`;

describe("Seen", () => {
  it("finds every key added before, in any namespace, and keeps namespaces apart", () => {
    const n = 200_000;
    const s = new Seen(n);
    let falsePositives = 0;
    for (let i = 0; i < n; i++) if (s.add("role_assignments k", key(i))) falsePositives++;
    for (let i = 0; i < n; i++) expect(s.add("role_assignments k", key(i))).toBe(true);
    // Sized for n: well under one new key in a thousand looked seen.
    expect(falsePositives).toBeLessThan(n / 1000);
    // The same key in another namespace (another table or conflict target) is another row.
    let other = 0;
    for (let i = 0; i < 10_000; i++) if (s.add("role_permissions k", key(i))) other++;
    expect(other).toBeLessThan(100);
  });

  it("still finds every key when filled far past its size (it only holds back more)", () => {
    const s = new Seen(0);
    for (let i = 0; i < 50_000; i++) s.add("t", key(i));
    for (let i = 0; i < 50_000; i++) expect(s.add("t", key(i))).toBe(true);
  });
});
