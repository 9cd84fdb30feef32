import { describe, expect, it } from "vitest";
import { encodedOnce, reusable } from "./handler-types.js";

describe("reusable responses", () => {
  it("a reusable response is encoded once, its bytes kept on it; any other response is encoded every time", () => {
    let encodes = 0;
    const encode = () => {
      encodes++;
      return Buffer.from([encodes]);
    };
    const shared = reusable({ allowed: true, revision: "7" });
    const first = encodedOnce(shared, encode);
    expect(encodedOnce(shared, encode)).toBe(first);
    expect(encodes).toBe(1);
    const plain = { allowed: true, revision: "7" };
    encodedOnce(plain, encode);
    encodedOnce(plain, encode);
    expect(encodes).toBe(3);
  });

  it("the kept bytes are invisible to the message's fields (not enumerable, not JSON)", () => {
    const shared = reusable({ allowed: false });
    encodedOnce(shared, () => Buffer.from([1]));
    expect(Object.keys(shared)).toEqual(["allowed"]);
    expect(JSON.stringify(shared)).toBe('{"allowed":false}');
  });
});
