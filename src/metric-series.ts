import type { Registry } from "prom-client";

/** One label pair's counts: a count, and when the series has buckets, their counts and the sum. */
interface Child {
  readonly labels: Record<string, string>;
  count: number;
  sum: number;
  readonly buckets: Float64Array | undefined;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export interface SeriesOptions {
  registry: Registry;
  /** Two label names: the first is bounded by maxFirst, the second by its callers (gRPC codes, true/false). */
  labelNames: readonly [string, string];
  /** Distinct first-label values kept; later ones count under "unknown". */
  maxFirst: number;
  counter: { name: string; help: string };
  histogram?: { name: string; help: string; buckets: readonly number[] };
}

/**
 * A counter (and optionally a histogram) over two labels, on the call path:
 * each label pair's child is found with two Map lookups and updated in place,
 * where prom-client hashes its label object on every inc and observe. The
 * children are bounded (maxFirst values of the first label). The registry
 * sees ordinary counter and histogram metrics, rendered at scrape time.
 */
export class CallSeries {
  readonly #byFirst = new Map<string, Map<string, Child>>();
  readonly #o: SeriesOptions;

  constructor(o: SeriesOptions) {
    this.#o = o;
    const children = () => [...this.#byFirst.values()].flatMap((m) => [...m.values()]);
    const reset = () => this.#byFirst.clear();
    o.registry.registerMetric({
      name: o.counter.name,
      help: o.counter.help,
      type: "counter",
      aggregator: "sum",
      get: () => ({ ...o.counter, type: "counter", aggregator: "sum", values: children().map((c) => ({ value: c.count, labels: c.labels })) }),
      reset,
    } as never);
    const h = o.histogram;
    if (!h) return;
    o.registry.registerMetric({
      name: h.name,
      help: h.help,
      type: "histogram",
      aggregator: "sum",
      get: () => ({ name: h.name, help: h.help, type: "histogram", aggregator: "sum", values: children().flatMap((c) => histogramValues(h, c)) }),
      reset,
    } as never);
  }

  /** Counts one event (and observes `value` when the series has a histogram). */
  record(first: string, second: string, value = 0): void {
    let seconds = this.#byFirst.get(first);
    if (!seconds) {
      if (this.#byFirst.size >= this.#o.maxFirst && first !== "unknown") return this.record("unknown", second, value);
      seconds = new Map();
      this.#byFirst.set(first, seconds);
    }
    let c = seconds.get(second);
    if (!c) {
      const [a, b] = this.#o.labelNames;
      const n = this.#o.histogram?.buckets.length;
      c = { labels: { [a]: first, [b]: second }, count: 0, sum: 0, buckets: n === undefined ? undefined : new Float64Array(n) };
      seconds.set(second, c);
    }
    c.count++;
    const bounds = this.#o.histogram?.buckets;
    if (!bounds || !c.buckets) return;
    c.sum += value;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        c.buckets[i] = (c.buckets[i] as number) + 1;
        break;
      }
    }
  }
}

/** prom-client's histogram shape: cumulative buckets with le, then +Inf, sum and count. */
function histogramValues(h: { name: string; buckets: readonly number[] }, c: Child): MetricValue[] {
  const out: MetricValue[] = [];
  let cumulative = 0;
  h.buckets.forEach((le, i) => {
    cumulative += c.buckets?.[i] ?? 0;
    out.push({ value: cumulative, labels: { le, ...c.labels }, metricName: `${h.name}_bucket` });
  });
  out.push({ value: c.count, labels: { le: "+Inf", ...c.labels }, metricName: `${h.name}_bucket` });
  out.push({ value: c.sum, labels: c.labels, metricName: `${h.name}_sum` });
  out.push({ value: c.count, labels: c.labels, metricName: `${h.name}_count` });
  return out;
}
