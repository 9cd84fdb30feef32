import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import type { ServiceHandlers } from "./handler-types.js";

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

/** At most 64 printable ASCII characters of a caller's string, for a message. */
const printablePrefix = (s: string): string => `${s.slice(0, 64).replace(/[^\x20-\x7e]/g, "?")}${s.length > 64 ? "…" : ""}`;

export function healthHandlers(state: HealthState): ServiceHandlers<typeof Health> {
  return {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service "${printablePrefix(req.service)}"`, Code.NotFound);
      return { status };
    },
    async *watch(req, ctx) {
      for await (const status of state.watch(req.service, ctx.signal)) yield { status };
    },
  };
}
