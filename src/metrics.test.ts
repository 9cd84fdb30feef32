import { describe, expect, it } from "vitest";
import { EVENT_LOOP_SAMPLE_MS, Metrics } from "./metrics.js";

describe("metrics", () => {
  it("method labels are bounded: past 256 distinct values, calls count under unknown", async () => {
    const m = new Metrics();
    for (let i = 0; i < 1000; i++) m.rpc(`/probe/${i}`, "NOT_FOUND", 0.001);
    const text = await m.registry.metrics();
    const series = text.split("\n").filter((l) => l.startsWith("authz_rpc_requests_total{"));
    expect(series.length).toBe(257);
    expect(text).toContain('authz_rpc_requests_total{method="unknown",code="NOT_FOUND"} 744');
  });

  it("keeps the event-loop lag series, sampled no more often than every 50 ms", async () => {
    const m = new Metrics();
    const text = await m.registry.metrics();
    for (const name of ["authz_nodejs_eventloop_lag_seconds", "authz_nodejs_eventloop_lag_p99_seconds", "authz_nodejs_eventloop_lag_max_seconds"])
      expect(text).toMatch(new RegExp(`^${name} `, "m"));
    expect(EVENT_LOOP_SAMPLE_MS).toBeGreaterThanOrEqual(50);
  });
});
