import { Code, ConnectError } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { printablePrefix } from "../errors.js";
import { reusable, type ServiceHandlers } from "./handler-types.js";

export { Status as ServingStatus };

/**
 * HealthState holds the serving status of the server ("") and of each
 * service, and wakes Watch streams on every change.
 */
export class HealthState {
  readonly #status = new Map<string, Status>();
  readonly #watchers = new Set<() => void>();

  constructor(services: readonly string[]) {
    this.#status.set("", Status.NOT_SERVING);
    for (const s of services) this.#status.set(s, Status.NOT_SERVING);
  }

  get(service: string): Status | undefined {
    return this.#status.get(service);
  }

  /** Sets every known service (and the server) to one status. */
  setAll(status: Status): void {
    let changed = false;
    for (const [k, v] of this.#status) {
      if (v !== status) {
        this.#status.set(k, status);
        changed = true;
      }
    }
    if (changed) for (const wake of [...this.#watchers]) wake();
  }

  /** Sets each listed service's status; returns the services whose status changed. */
  apply(statuses: ReadonlyMap<string, Status>): string[] {
    const changed: string[] = [];
    for (const [k, v] of statuses) {
      if (this.#status.has(k) && this.#status.get(k) !== v) {
        this.#status.set(k, v);
        changed.push(k);
      }
    }
    if (changed.length) for (const wake of [...this.#watchers]) wake();
    return changed;
  }

  /** Every service (and the server, "") with its status. */
  entries(): Array<[string, Status]> {
    return [...this.#status];
  }

  get serving(): boolean {
    return this.#status.get("") === Status.SERVING;
  }

  /** Yields the current status at once, then each change, until the signal aborts. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status> {
    let last: Status | undefined;
    while (!signal.aborted) {
      const now = this.#status.get(service) ?? Status.SERVICE_UNKNOWN;
      if (now !== last) {
        last = now;
        yield now;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#watchers.delete(wake);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.#watchers.add(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }
}

export function healthHandlers(state: HealthState): ServiceHandlers<typeof Health> {
  // One answer per status, shared by every call and encoded once (the probes and sidecars call it often).
  const answers = new Map<Status, { status: Status }>();
  return {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service "${printablePrefix(req.service)}"`, Code.NotFound);
      let answer = answers.get(status);
      if (answer === undefined) {
        answer = reusable({ status });
        answers.set(status, answer);
      }
      return answer;
    },
    async *watch(req, ctx) {
      for await (const status of state.watch(req.service, ctx.signal)) yield { status };
    },
  };
}

/** What readiness follows, read on every health tick. */
export interface HealthSignals {
  /** Start-up finished (database reached, migrated, engine loaded) and no shutdown began. */
  started(): boolean;
  /** The database answers (writes need it). */
  databaseReachable(): boolean;
  /** How long ago the engine was last known to hold the newest revision, and the bound. */
  stalenessMs(): number;
  readonly maxStalenessMs: number;
  /** Every credential source is loaded (API keys), so a valid credential is never refused. */
  credentialsLoaded(): boolean;
}

/** Services that need the database on every call (writes; Watch reads the change log): NOT_SERVING as soon as it is unreachable. */
export const WRITE_SERVICES: readonly string[] = ["authz.v1.AdminService", "authz.v1.WatchService"];

/**
 * The status of each service and of the server (""): decisions (and the
 * overall status, /readyz) are SERVING while the engine is within its
 * staleness bound and credentials are loaded; writers additionally need the
 * database to answer. Before start-up and after SIGTERM everything is NOT_SERVING.
 */
export function deriveHealth(services: Iterable<string>, s: HealthSignals): Map<string, Status> {
  const started = s.started();
  const decisions = started && s.credentialsLoaded() && s.stalenessMs() <= s.maxStalenessMs;
  const writes = decisions && s.databaseReachable();
  const out = new Map<string, Status>();
  for (const name of services) {
    const ok = WRITE_SERVICES.includes(name) ? writes : decisions;
    out.set(name, ok ? Status.SERVING : Status.NOT_SERVING);
  }
  return out;
}
