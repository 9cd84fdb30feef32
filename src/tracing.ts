import { context, propagation, type Span, SpanKind, SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

/** OpenTelemetry tracing, on only when an OTLP endpoint is configured. */
export interface Tracing {
  readonly enabled: boolean;
  /**
   * Records one server span for a finished call, parented to the caller's
   * W3C traceparent when it sent one.
   */
  callSpan(path: string, code: string, startedAtMs: number, durationMs: number, header: (name: string) => string | undefined): void;
  shutdown(): Promise<void>;
}

export const NO_TRACING: Tracing = { enabled: false, callSpan() {}, shutdown: async () => {} };

export function startTracing(endpoint: string, serviceVersion: string): Tracing {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": "authz", "service.version": serviceVersion }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }))],
  });
  provider.register();
  const tracer: Tracer = provider.getTracer("authz");
  return {
    enabled: true,
    callSpan(path, code, startedAtMs, durationMs, header) {
      const carrier: Record<string, string> = {};
      for (const h of ["traceparent", "tracestate"]) {
        const v = header(h);
        if (v) carrier[h] = v;
      }
      const parent = propagation.extract(context.active(), carrier);
      const [, service = "", method = ""] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
      const span: Span = tracer.startSpan(
        path.slice(1),
        {
          kind: SpanKind.SERVER,
          startTime: startedAtMs,
          attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method, "rpc.grpc.status_code_name": code },
        },
        parent,
      );
      if (code !== "OK") span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      span.end(startedAtMs + durationMs);
    },
    shutdown: () => provider.shutdown(),
  };
}

export { trace };
