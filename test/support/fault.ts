// Small helpers shared by the fault tests (test/fault/): gRPC calls with a
// chosen deadline that resolve to the outcome instead of throwing, bounded
// waits for an event, and one Prometheus sample.
import * as grpc from "@grpc/grpc-js";

export type Outcome<T> = { ok: true; value: T; ms: number } | { ok: false; code: grpc.status; details: string; reason: string | undefined; ms: number };

/** One unary call; never throws: the outcome says what happened and how long it took. */
export function call<T>(
  c: grpc.Client & Record<string, Function>,
  method: string,
  req: unknown,
  deadlineMs: number,
  md = new grpc.Metadata(),
): Promise<Outcome<T>> {
  const started = performance.now();
  return new Promise((resolve) => {
    (c[method] as Function).call(c, req, md, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => {
      const ms = performance.now() - started;
      if (!err) return resolve({ ok: true, value: res, ms });
      resolve({ ok: false, code: err.code, details: err.details, reason: errorReason(err), ms });
    });
  });
}

/** The google.rpc.ErrorInfo reason of a gRPC error, read loosely from the status details. */
export function errorReason(err: grpc.ServiceError): string | undefined {
  const bin = err.metadata?.get("grpc-status-details-bin")[0];
  if (!bin) return undefined;
  const m = /([A-Z][A-Z0-9_]{3,})/.exec(
    Buffer.from(bin as Buffer)
      .toString("latin1")
      .replace(/[^\x20-\x7e]/g, " "),
  );
  return m?.[1];
}

/** Resolves once cond() is true; rejects after ms. Polls every `every` ms. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what = "condition", every = 10): Promise<number> {
  const started = performance.now();
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return performance.now() - started;
    if (Date.now() >= end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** One sample of a Prometheus metric from /metrics (the first series with that name), or undefined. */
export async function metric(httpPort: number, name: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : undefined;
}
