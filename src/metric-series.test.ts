import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { CallSeries } from "./metric-series.js";

const BUCKETS = [0.001, 0.01, 0.1, 1];
const CALLS: Array<[string, string, number]> = [
  ["/a.S/M", "OK", 0.0004],
  ["/a.S/M", "OK", 0.001],
  ["/a.S/M", "OK", 0.05],
  ["/a.S/M", "NOT_FOUND", 7],
  ["/b.S/N", "OK", 0.2],
];

/** The metric lines (no comments) of one registry, sorted, for comparison. */
const lines = async (r: Registry) =>
  (await r.metrics())
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .sort();

describe("CallSeries", () => {
  it("renders exactly what prom-client's Counter and Histogram render for the same calls", async () => {
    const ours = new Registry();
    const series = new CallSeries({
      registry: ours,
      labelNames: ["method", "code"],
      maxFirst: 10,
      counter: { name: "x_total", help: "h" },
      histogram: { name: "x_seconds", help: "h", buckets: BUCKETS },
    });
    const theirs = new Registry();
    const total = new Counter({ name: "x_total", help: "h", labelNames: ["method", "code"], registers: [theirs] });
    const seconds = new Histogram({ name: "x_seconds", help: "h", labelNames: ["method", "code"], buckets: BUCKETS, registers: [theirs] });
    for (const [method, code, s] of CALLS) {
      series.record(method, code, s);
      total.inc({ method, code });
      seconds.observe({ method, code }, s);
    }
    expect(await lines(ours)).toEqual(await lines(theirs));
    expect(await lines(ours)).toContain('x_seconds_bucket{le="+Inf",method="/a.S/M",code="NOT_FOUND"} 1');
  });

  it("keeps at most maxFirst values of the first label; the rest count under unknown", async () => {
    const r = new Registry();
    const s = new CallSeries({ registry: r, labelNames: ["method", "allowed"], maxFirst: 3, counter: { name: "d_total", help: "h" } });
    for (let i = 0; i < 10; i++) s.record(`m${i}`, "true");
    const text = await r.metrics();
    expect(text.split("\n").filter((l) => l.startsWith("d_total{"))).toEqual([
      'd_total{method="m0",allowed="true"} 1',
      'd_total{method="m1",allowed="true"} 1',
      'd_total{method="m2",allowed="true"} 1',
      'd_total{method="unknown",allowed="true"} 7',
    ]);
  });

  it("registry.resetMetrics() empties the series", async () => {
    const r = new Registry();
    const s = new CallSeries({ registry: r, labelNames: ["method", "allowed"], maxFirst: 3, counter: { name: "d_total", help: "h" } });
    s.record("m", "false");
    r.resetMetrics();
    expect((await r.metrics()).split("\n").filter((l) => l.startsWith("d_total{"))).toEqual([]);
  });
});
