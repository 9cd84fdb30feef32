# syntax=docker/dockerfile:1
#
# authz container image.
#   docker build -t authz:dev .
#   docker run --rm --read-only --tmpfs /tmp -p 50051:50051 -p 8080:8080 authz:dev
# Without DATABASE_URL / REDIS_URL the service uses its embedded, in-process
# stores: fine for a local try-out, never for production.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: full dependency tree + TypeScript compile -----------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# patches/ before npm ci: its postinstall applies them (patch-package).
COPY package.json package-lock.json ./
COPY patches ./patches
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# ---- prod-deps: production node_modules only ---------------------------------
# Kept in its own stage so the npm cache and dev tooling never reach the
# runtime image; only the resulting node_modules is copied over.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
# Install scripts stay on: the root package's postinstall patches postgres.js
# (patches/, docs/faults.md), and the grep makes the build fail without it.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund \
 && test "$(cat node_modules/postgres/src/connection.js node_modules/postgres/src/index.js | grep -c 'authz patch')" -ge 6

# ---- runtime -----------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime

# Fixed numeric IDs so Kubernetes can verify runAsNonRoot; k8s/base uses the same.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid "${APP_GID}" authz \
 && useradd --system --uid "${APP_UID}" --gid authz \
      --home-dir /tmp --no-create-home --shell /usr/sbin/nologin authz

# HOME and npm's cache point at /tmp: the only writable path when the root
# filesystem is mounted read-only.
ENV NODE_ENV=production \
    HOME=/tmp \
    NPM_CONFIG_CACHE=/tmp/.npm \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    AUTHZ_HOST=0.0.0.0 \
    AUTHZ_GRPC_PORT=50051 \
    AUTHZ_HTTP_PORT=8080

WORKDIR /app
# Application files stay owned by root (read-only to the app user).
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
COPY proto ./proto
COPY examples/demo.json ./examples/demo.json

USER ${APP_UID}:${APP_GID}

# 50051: gRPC (incl. grpc.health.v1.Health)
# 8080:  Connect, gRPC-Web, GET /healthz (liveness), GET /readyz (readiness)
EXPOSE 50051 8080

# Slim images have no curl; Node 20's global fetch does the job.
# (Kubernetes ignores HEALTHCHECK and uses the probes in k8s/base instead.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.AUTHZ_HTTP_PORT||8080)+'/readyz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Exec form: node is PID 1 and receives SIGTERM directly (the app drains
# within AUTHZ_SHUTDOWN_TIMEOUT_MS).
CMD ["node", "dist/src/main.js"]
