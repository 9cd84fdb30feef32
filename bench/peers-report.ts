// docs/benchmarks.md text of the peers part (bench/peers.ts): a table per run and what the numbers show.

import { median } from "./server-stacks.js";
import { PEER_SIDES, type PeerRegime, type PeerRpc, type PeerSide, type PeersResult, type PeersRow, peersMedian, perRoundRatios } from "./peers.js";

export type { PeersResult };

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const mib = (b: number): string => (Number.isFinite(b) ? `${(b / 2 ** 20).toFixed(0)} MiB` : "n/a");
const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}x` : "n/a");
const ms = (us: number): string => (Number.isFinite(us) ? `${(us / 1000).toFixed(2)} ms` : "n/a");

const SIDE_LABEL: Record<PeerSide, string> = { authz: "authz", cerbos: "Cerbos (log level info)", "cerbos-quiet": "Cerbos (log level warn)" };

function med(p: PeersResult, side: PeerSide, rpc: PeerRpc, regime: PeerRegime, pick: (r: PeersRow) => number): number {
  return peersMedian(p.rows, side, rpc, regime, pick);
}
function medRatio(p: PeersResult, rpc: PeerRpc, regime: PeerRegime, pick: (r: PeersRow) => number, vs: PeerSide = "cerbos"): number {
  return median(perRoundRatios(p.rows, rpc, regime, pick, vs));
}

/** Rows for the headline table of docs/benchmarks.md. */
export function peersHeadline(p: PeersResult): string[] {
  if (p.skipped || p.rows.length === 0) return [];
  const rps = (s: PeerSide) => med(p, s, "check", "saturated", (r) => r.reqPerSec);
  const f = (s: PeerSide, pick: (r: PeersRow) => number) => med(p, s, "check", "fixed", pick);
  const row = (s: PeerSide, label: string) => [
    `| Check throughput, one core each (h2load ${p.shape.clients}x${p.shape.streams}) | authz ${int(rps("authz"))} req/s | Cerbos ${p.cerbosVersion} CheckResources, ${label}, same run | ${int(rps(s))} req/s | ${ratio(medRatio(p, "check", "saturated", (r) => r.reqPerSec, s))} |`,
    `| Check p99 / p99.9 at ${int(p.fixed.rps)} req/s, one core each | authz ${ms(f("authz", (r) => r.p99Us))} / ${ms(f("authz", (r) => r.p999Us))} | Cerbos, ${label}, same run | ${ms(f(s, (r) => r.p99Us))} / ${ms(f(s, (r) => r.p999Us))} | ${ratio(medRatio(p, "check", "fixed", (r) => r.p99Us, s))} / ${ratio(medRatio(p, "check", "fixed", (r) => r.p999Us, s))} |`,
  ];
  return [...row("cerbos", "log level info"), ...row("cerbos-quiet", "log level warn")];
}

function figuresTable(p: PeersResult): string[] {
  const out = [
    "| measure | authz | Cerbos, log level info | Cerbos, log level warn | authz ÷ Cerbos info | authz ÷ Cerbos warn |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  const line = (label: string, rpc: PeerRpc, regime: PeerRegime, pick: (r: PeersRow) => number, fmt: (x: number) => string) => {
    const v = (s: PeerSide) => fmt(med(p, s, rpc, regime, pick));
    const q = (s: PeerSide) => ratio(medRatio(p, rpc, regime, pick, s));
    out.push(`| ${label} | ${v("authz")} | ${v("cerbos")} | ${v("cerbos-quiet")} | ${q("cerbos")} | ${q("cerbos-quiet")} |`);
  };
  const us = (x: number) => `${x.toFixed(1)} µs`;
  const at = `at ${int(p.fixed.rps)} req/s`;
  line("Check throughput, as fast as served (req/s)", "check", "saturated", (r) => r.reqPerSec, int);
  line("Check server CPU per call", "check", "saturated", (r) => r.cpuUsPerCall, us);
  line("Check p50 as fast as served", "check", "saturated", (r) => r.p50Us, ms);
  line("Check p99 as fast as served", "check", "saturated", (r) => r.p99Us, ms);
  line("Health throughput (req/s)", "health", "saturated", (r) => r.reqPerSec, int);
  line("Health server CPU per call", "health", "saturated", (r) => r.cpuUsPerCall, us);
  line(`Check ${at}: p50`, "check", "fixed", (r) => r.p50Us, ms);
  line(`Check ${at}: p99`, "check", "fixed", (r) => r.p99Us, ms);
  line(`Check ${at}: p99.9`, "check", "fixed", (r) => r.p999Us, ms);
  line(`Check ${at}: max`, "check", "fixed", (r) => r.maxUs, ms);
  line(`Check ${at}: server CPU per call`, "check", "fixed", (r) => r.cpuUsPerCall, us);
  line(
    `Check ${at}: run-queue wait of the server's threads in the run`,
    "check",
    "fixed",
    (r) => r.runQueueWaitMs,
    (x) => `${x.toFixed(0)} ms`,
  );
  line(
    "log lines written per Check call",
    "check",
    "saturated",
    (r) => r.logLinesPerCall,
    (x) => x.toFixed(2),
  );
  const rss = (s: PeerSide) => `${mib(p.rss[s].rssBytes)} (${mib(p.rss[s].hwmBytes)})`;
  out.push(
    `| RSS after the rounds (peak) | ${rss("authz")} | ${rss("cerbos")} | ${rss("cerbos-quiet")} | ${ratio(p.rss.authz.rssBytes / p.rss.cerbos.rssBytes)} | ${ratio(p.rss.authz.rssBytes / p.rss["cerbos-quiet"].rssBytes)} |`,
  );
  return out;
}

function roundsTable(p: PeersResult): string[] {
  const out = [
    "| round | side | RPC | regime | req/s | CPU/call | run-queue wait | p50 | p99 | p99.9 | max | log lines/call |",
    "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of p.rows) {
    out.push(
      `| ${r.round} | ${SIDE_LABEL[r.side]} | ${r.rpc === "check" ? "Check" : "Health"} | ${r.regime === "fixed" ? `${int(p.fixed.rps)} req/s` : "as fast as served"} | ${int(r.reqPerSec)} | ${r.cpuUsPerCall.toFixed(1)} µs | ${r.runQueueWaitMs.toFixed(0)} ms | ${ms(r.p50Us)} | ${ms(r.p99Us)} | ${ms(r.p999Us)} | ${ms(r.maxUs)} | ${r.logLinesPerCall.toFixed(2)} |`,
    );
  }
  return out;
}

function histogramTable(p: PeersResult): string[] {
  const b = p.histogram.boundsUs;
  const out = [`| latency | ${PEER_SIDES.map((x) => SIDE_LABEL[x]).join(" | ")} |`, `|---|${PEER_SIDES.map(() => "---:").join("|")}|`];
  for (let i = 0; i <= b.length; i++) {
    const label = i === 0 ? `≤ ${ms(b[0] ?? NaN)}` : i === b.length ? `> ${ms(b[i - 1] ?? NaN)}` : `${ms(b[i - 1] ?? NaN)} – ${ms(b[i] ?? NaN)}`;
    out.push(`| ${label} | ${PEER_SIDES.map((x) => int(p.histogram.counts[x]?.[i] ?? 0)).join(" | ")} |`);
  }
  return out;
}

function diagTable(p: PeersResult): string[] {
  const out = [
    "| round | authz run | p50 | p99 | p99.9 | max | CPU/call | scavenges (total, longest) | mark-compacts (total, longest) | event-loop delay p99 / max | run-queue wait: all threads / main thread | requests ≥ p99: over a scavenge / a mark-compact / no GC |",
    "|---:|---|---:|---:|---:|---:|---:|---|---|---|---|---|",
  ];
  const gc = (g: { count: number; totalMs: number; maxMs: number }) => `${g.count} (${g.totalMs.toFixed(1)} ms, ${g.maxMs.toFixed(2)} ms)`;
  for (const d of p.diag) {
    out.push(
      `| ${d.round ?? ""} | ${d.label} | ${ms(d.p50Us)} | ${ms(d.p99Us)} | ${ms(d.p999Us)} | ${ms(d.maxUs)} | ${d.cpuUsPerCall.toFixed(1)} µs | ${gc(d.scavenge)} | ${gc(d.markCompact)} | ` +
        `${d.eventLoopDelay.p99Ms.toFixed(2)} / ${d.eventLoopDelay.maxMs.toFixed(2)} ms | ${d.runQueueWaitMs.toFixed(0)} / ${(d.mainThreadWaitMs ?? NaN).toFixed(0)} ms in ${(d.windowMs / 1000).toFixed(1)} s | ` +
        `${d.tail.overlapMinor} / ${d.tail.overlapMajor} / ${d.tail.overlapNone} of ${d.tail.requests} |`,
    );
  }
  const labels = [...new Set(p.diag.map((d) => d.label))];
  if (p.diag.length > labels.length) {
    for (const l of labels) {
      const xs = p.diag.filter((d) => d.label === l);
      const m = (f: (d: (typeof xs)[number]) => number) => median(xs.map(f));
      out.push(
        `| **median** | ${l} | ${ms(m((d) => d.p50Us))} | ${ms(m((d) => d.p99Us))} | ${ms(m((d) => d.p999Us))} | ${ms(m((d) => d.maxUs))} | ${m((d) => d.cpuUsPerCall).toFixed(1)} µs | ` +
          `${m((d) => d.scavenge.count)} (${m((d) => d.scavenge.totalMs).toFixed(1)} ms) | ${m((d) => d.markCompact.count)} | ${m((d) => d.eventLoopDelay.p99Ms).toFixed(2)} / ${m((d) => d.eventLoopDelay.maxMs).toFixed(2)} ms | ` +
          `${m((d) => d.runQueueWaitMs).toFixed(0)} / ${m((d) => d.mainThreadWaitMs).toFixed(0)} ms | ${m((d) => d.tail.overlapMinor)} / ${m((d) => d.tail.overlapMajor)} / ${m((d) => d.tail.overlapNone)} |`,
      );
    }
  }
  return out;
}

function setup(p: PeersResult): string[] {
  const lines = (s: PeerSide) => med(p, s, "check", "saturated", (r) => r.logLinesPerCall);
  const linesText = (s: PeerSide) => {
    const n = lines(s);
    return !Number.isFinite(n)
      ? "log lines not counted"
      : n < 0.005
        ? "writes no log line for a successful call"
        : `writes ${n.toFixed(n % 1 === 0 ? 0 : 2)} log line(s) per call`;
  };
  return [
    `Same data for both: ${int(p.counts.users)} users, ${int(p.counts.organizations)} organizations, ${int(p.counts.memberships)} memberships (role assignments; bench/dataset.ts, 3 per user). ` +
      `Each server runs pinned to core ${p.cpus.server} (\`taskset -c ${p.cpus.server}\`; Cerbos therefore runs with GOMAXPROCS=1), h2load pinned to core ${p.cpus.load}; PostgreSQL and Redis are not pinned. ` +
      "While one server is measured the other two are paused (SIGSTOP, then SIGCONT and a SERVING health answer before the next side's warm-up), so it has the core to itself: an idle Cerbos still runs Go's forced collection every two minutes, about 35 ms of CPU at GOMAXPROCS=1. " +
      `Three servers: authz, Cerbos at its default log level (info) and the same Cerbos at log level warn (no per-call log lines, as authz writes none for a successful call). ` +
      `${p.rounds} round(s); in each, every server (order rotating) gets Check as fast as served (${int(p.requests)} requests after ${int(p.warmup)} warm-up, ${p.shape.clients} connections x ${p.shape.streams} streams), ` +
      `Health as fast as served, and Check at a fixed ${int(p.fixed.rps)} req/s (${int(p.fixed.requests)} requests, h2load \`--rps\` per connection). ` +
      "Server CPU is read from /proc/<pid>/task/*/schedstat around each measured run (all threads; h2load's own CPU is not counted); latency per request from h2load's `--log-file`; log lines are counted in each server's stdout file. " +
      "Run-queue wait (the second field of schedstat) is the time the server's threads were ready to run but the core was busy with something else: other processes on this shared machine, or the hypervisor (steal); it bounds how much of a tail is the machine rather than the server.",
    "",
    "What each side does per call:",
    "",
    `- **authz** (\`createApp\` as shipped: @grpc/grpc-js, log level info, PostgreSQL behind it, API key authentication on): ${p.check.authz}. ` +
      `It checks the API key, decodes the request, looks the user's memberships up itself in its in-memory snapshot of the database (kept current from PostgreSQL's change feed; no query per call), walks the role chain, answers with the decision and the snapshot's revision, and ${linesText("authz")} (measured; at level info authz logs failed calls and a sample of successful ones, \`AUTHZ_RPC_LOG_SAMPLE\`, default 0).`,
    `- **Cerbos ${p.cerbosVersion}** (\`cerbos server\` from the npm package, disk store with the policy below, log level info, audit log off, no authentication): ${p.check.cerbos}. ` +
      `It holds no data: the caller hands it the user's role in the organization, so the lookup authz does (which role does this user hold here?) is not part of its call. It validates the request, evaluates the compiled policy for the role and action, answers with an effect per action and a call id, and ${linesText("cerbos")} (measured; its gRPC "Handled request" lines at level info).`,
    "",
  ];
}

/** The peers section of docs/benchmarks.md. */
export function peersSection(p: PeersResult, runLine: string): string[] {
  const out = ["### Peers side by side: authz and Cerbos, one core each", "", runLine, ""];
  if (p.skipped) return [...out, `Skipped: ${p.skipped}.`, ""];
  out.push(...setup(p));
  out.push(
    `Load average at the end of the part: ${p.loadAvg.map((x) => x.toFixed(2)).join(" / ")}; CPU steal during it: ${Number.isFinite(p.stealShare) ? `${(p.stealShare * 100).toFixed(0)}%` : "n/a"}.`,
    "",
  );
  out.push("Medians over the rounds:", "", ...figuresTable(p), "");
  out.push(`Latency histogram of the fixed-rate Check runs (${int(p.fixed.rps)} req/s, every round):`, "", ...histogramTable(p), "");
  if (p.diag.length > 0) {
    out.push(
      `authz alone at ${int(p.fixed.rps)} req/s, in every round after the three servers (the two variants in alternating order), in a server child with \`--trace-gc\`, \`perf_hooks.monitorEventLoopDelay\` (1 ms resolution) and a \`gc\` PerformanceObserver; ` +
        "each request at or above the run's p99 is matched against the GC pauses that overlapped it (h2load's request start times against the pauses' wall-clock times):",
      "",
      ...diagTable(p),
      "",
    );
  }
  out.push("Every round:", "", ...roundsTable(p), "");
  out.push(
    "The Cerbos policy the benchmark writes (organization role r holds the first 2·(5−r) permissions, as in bench/dataset.ts):",
    "",
    "```yaml",
    p.policy,
    "```",
    "",
  );
  out.push("Commands (PORT and KEY filled in by the benchmark; `frame.bin` is the framed request message):", "", "```");
  for (const [k, v] of Object.entries(p.commands)) out.push(`# ${k}`, v);
  out.push("```", "");
  return out;
}
