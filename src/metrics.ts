import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { CallSeries } from "./metric-series.js";

const flag = (b: boolean | undefined): number | undefined => (b === undefined ? undefined : b ? 1 : 0);

/** What the metrics read from the running service when scraped. */
export interface MetricSources {
  /** Revision of the engine answering calls, or undefined before it is loaded. */
  engineRevision(): bigint | undefined;
  /** Newest revision the change feed knows the database has committed. */
  databaseRevision(): bigint | undefined;
  listener(): { reconnects: number; catchUps: number; notifications: number; listenerLosses: number; pollFailures: number } | undefined;
  /** Whether the change listener's LISTEN is active. */
  listening(): boolean | undefined;
  engine(): { loads: number; catchUps: number; changesApplied: number; catchUpFailures: number; staleReads: number } | undefined;
  /** How long ago the engine was last known to hold the newest revision. */
  engineStalenessMs(): number | undefined;
  maxStalenessMs(): number | undefined;
  /** Whether the database answered the last attempt to reach it. */
  databaseReachable(): boolean | undefined;
  /** Whether API keys are loaded (undefined when authentication is off). */
  apiKeysLoaded(): boolean | undefined;
  serving(): boolean;
  /** The rate-limit store: "up", "down", "breaker_open" or "embedded". */
  rateLimitStore(): string | undefined;
}

/** How often the event-loop lag histogram samples (prom-client's eventLoopMonitoringPrecision). */
export const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * Prometheus metrics (prom-client): per-RPC counts and latency by method and
 * code, decisions, freshness, the change listener, and process metrics.
 * Gauges that mirror other components' counters are read at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #rpc: CallSeries;
  readonly #decisions: CallSeries;
  readonly #rateLimit: Counter<"policy_source">;
  #sources: MetricSources | undefined;

  constructor() {
    // The event-loop lag histogram samples on a timer of its own; prom-client's default (every 10 ms)
    // woke an idle server 100 times a second, about 1% of a core on a small VM. Every 100 ms keeps
    // ten samples a second for the lag gauges.
    collectDefaultMetrics({ register: this.registry, prefix: "authz_", eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    // Method labels: callers pass served method paths only; past the first 256 distinct values a call counts under "unknown".
    this.#rpc = new CallSeries({
      registry: this.registry,
      labelNames: ["method", "code"],
      maxFirst: 256,
      counter: { name: "authz_rpc_requests_total", help: "RPCs served, by method and gRPC status code." },
      histogram: {
        name: "authz_rpc_duration_seconds",
        help: "Server-side RPC latency, by method and gRPC status code.",
        buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      },
    });
    this.#decisions = new CallSeries({
      registry: this.registry,
      labelNames: ["method", "allowed"],
      maxFirst: 16,
      counter: { name: "authz_decisions_total", help: "Authorization decisions, by RPC and outcome." },
    });
    this.#rateLimit = new Counter({
      name: "authz_ratelimit_decisions_total",
      help: "Rate-limit decisions by where the answer came from (store, shadow, failure_open, failure_closed, no_policy, invalid_descriptor).",
      labelNames: ["policy_source"],
      registers: [this.registry],
    });
    const read = <T>(f: (s: MetricSources) => T | undefined): T | undefined => (this.#sources ? f(this.#sources) : undefined);
    new Gauge({
      name: "authz_engine_revision",
      help: "Revision of the data the engine answers from.",
      registers: [this.registry],
      collect() {
        const r = read((s) => s.engineRevision());
        if (r !== undefined) this.set(Number(r));
      },
    });
    new Gauge({
      name: "authz_engine_lag_revisions",
      help: "How many revisions the engine is behind the newest one the database reported.",
      registers: [this.registry],
      collect() {
        const e = read((s) => s.engineRevision());
        const d = read((s) => s.databaseRevision());
        if (e !== undefined && d !== undefined) this.set(Number(d > e ? d - e : 0n));
      },
    });
    const STORE_STATES = ["up", "down", "breaker_open", "embedded"];
    new Gauge({
      name: "authz_ratelimit_store_state",
      help: "1 for the rate-limit store's current state (up, down, breaker_open, embedded), 0 for the others.",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        const now = read((s) => s.rateLimitStore());
        for (const state of STORE_STATES) this.set({ state }, state === now ? 1 : 0);
      },
    });
    new Gauge({
      name: "authz_serving",
      help: "1 while health is SERVING.",
      registers: [this.registry],
      collect() {
        this.set(read((s) => s.serving()) ? 1 : 0);
      },
    });
    const mirror = (name: string, help: string, f: (s: MetricSources) => number | undefined) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const v = read(f);
          if (v !== undefined) this.set(v);
        },
      });
    mirror("authz_listener_reconnects_total", "Times the change listener reconnected (each followed by a catch-up).", (s) => s.listener()?.reconnects);
    mirror("authz_listener_notifications_total", "Change notifications received.", (s) => s.listener()?.notifications);
    mirror("authz_listener_catchups_total", "Reads of the newest revision (on reconnect, poll or request).", (s) => s.listener()?.catchUps);
    mirror("authz_engine_catchups_total", "Change-log replays applied to the engine.", (s) => s.engine()?.catchUps);
    mirror("authz_engine_changes_applied_total", "Change-log rows applied incrementally.", (s) => s.engine()?.changesApplied);
    mirror("authz_engine_loads_total", "Full snapshot loads of the engine.", (s) => s.engine()?.loads);
    mirror("authz_engine_catchup_failures_total", "Change-log catch-ups that failed (each is retried with backoff).", (s) => s.engine()?.catchUpFailures);
    mirror(
      "authz_engine_stale_reads_total",
      "Token-less reads answered while the engine was staler than AUTHZ_MAX_STALENESS_MS.",
      (s) => s.engine()?.staleReads,
    );
    mirror(
      "authz_engine_staleness_seconds",
      "How long ago the engine was last known to hold the database's newest revision (0 while notifications flow).",
      (s) => {
        const ms = s.engineStalenessMs();
        return ms === undefined ? undefined : ms / 1000;
      },
    );
    mirror("authz_engine_max_staleness_seconds", "The staleness bound (AUTHZ_MAX_STALENESS_MS): beyond it decisions report NOT_SERVING.", (s) => {
      const ms = s.maxStalenessMs();
      return ms === undefined ? undefined : ms / 1000;
    });
    mirror("authz_listener_up", "1 while the change listener's LISTEN is active.", (s) => flag(s.listening()));
    mirror("authz_listener_losses_total", "Times the change listener's connection was lost.", (s) => s.listener()?.listenerLosses);
    mirror("authz_listener_poll_failures_total", "Reads of the newest revision that failed.", (s) => s.listener()?.pollFailures);
    mirror("authz_database_reachable", "1 while the database answers; 0 while statements are refused at once and a probe waits for it.", (s) =>
      flag(s.databaseReachable()),
    );
    mirror("authz_api_keys_loaded", "1 once the API keys are loaded (absent when authentication is off).", (s) => flag(s.apiKeysLoaded()));
  }

  attach(sources: MetricSources): void {
    this.#sources = sources;
  }

  rpc(method: string, code: string, seconds: number): void {
    this.#rpc.record(method, code, seconds);
  }

  decision(method: string, allowed: boolean): void {
    this.#decisions.record(method, allowed ? "true" : "false");
  }

  rateLimitSource(source: string): void {
    this.#rateLimit.inc({ policy_source: source });
  }
}
