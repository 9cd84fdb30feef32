import { describe, expect, it } from "vitest";
import { CircuitBreaker } from "./circuit-breaker.js";

describe("CircuitBreaker", () => {
  it("opens after N consecutive failures, lets one probe through after the cool-down, closes on its success", () => {
    let now = 0;
    const changes: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 100, nowMs: () => now, onChange: (to, from) => changes.push(`${from}->${to}`) });
    b.failure();
    b.success();
    b.failure();
    b.failure();
    expect(b.state).toBe("closed");
    b.failure();
    expect(b.state).toBe("open");
    expect(b.tryPass()).toBe(false);
    expect(b.msUntilProbe()).toBe(100);
    now = 100;
    expect(b.tryPass()).toBe(true);
    expect(b.state).toBe("half_open");
    expect(b.tryPass()).toBe(false); // one probe at a time
    b.failure();
    expect(b.state).toBe("open");
    now = 150;
    expect(b.tryPass()).toBe(false);
    now = 200;
    expect(b.tryPass()).toBe(true);
    b.success();
    expect(b.state).toBe("closed");
    expect(b.tryPass()).toBe(true);
    expect(changes).toEqual(["closed->open", "open->half_open", "half_open->open", "open->half_open", "half_open->closed"]);
  });
});

describe("CircuitBreaker.release", () => {
  it("a half-open probe that never reached Redis gives its turn to the next call, without closing or opening", () => {
    let now = 0;
    const b = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100, nowMs: () => now });
    b.failure();
    now = 100;
    expect(b.tryPass()).toBe(true);
    expect(b.tryPass()).toBe(false);
    b.release();
    expect(b.state).toBe("half_open");
    expect(b.tryPass()).toBe(true);
    b.success();
    expect(b.state).toBe("closed");
  });
});
