#!/usr/bin/env bash
# Performs the container image's install and start steps without Docker:
# copy what the Dockerfile's runtime stage copies into a temporary directory,
# install production dependencies only (npm ci --omit=dev), start the server
# from there with a read-only view of its files, and wait for SERVING.
# Proves the shipped server runs without any dev dependency, and that the
# install applied patches/ to postgres.js (the root package's postinstall runs
# patch-package, a production dependency, so install scripts must not be
# ignored here).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d dist/src ] || npm run --silent build
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

cp package.json package-lock.json "$work/"
cp -r dist migrations proto patches "$work/"
mkdir -p "$work/examples" && cp examples/demo.json "$work/examples/"
(cd "$work" && npm ci --omit=dev --no-audit --no-fund >/dev/null)
patched=$(cat "$work/node_modules/postgres/src/connection.js" "$work/node_modules/postgres/src/index.js" | grep -c "authz patch" || true)
if [ "${patched:-0}" -lt 6 ]; then
  echo "production install did not apply patches/postgres+*.patch (found ${patched:-0} of 6 patched places)" >&2
  exit 1
fi
echo "production install: postgres.js patched ($patched places)"
if [ -d "$work/node_modules/vitest" ] || [ -d "$work/node_modules/typescript" ] || [ -d "$work/node_modules/@bufbuild/buf" ]; then
  echo "production install contains dev dependencies" >&2
  exit 1
fi
chmod -R a-w "$work/dist" "$work/migrations" "$work/proto" "$work/node_modules"

port_grpc=$((20000 + RANDOM % 20000))
port_http=$((port_grpc + 1))
(cd "$work" && exec env NODE_ENV=production HOME="$work/tmp" AUTHZ_CONSOLE=on AUTHZ_HOST=127.0.0.1 AUTHZ_GRPC_PORT=$port_grpc AUTHZ_HTTP_PORT=$port_http \
  node dist/src/main.js >"$work/server.log" 2>&1) &
pid=$!
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port_http/readyz" >/dev/null 2>&1; then
    body=$(curl -fsS -X POST -H 'content-type: application/json' -d '{}' "http://127.0.0.1:$port_http/grpc.health.v1.Health/Check")
    echo "production install serves: $body"
    # The web console (on by default only in embedded mode; CI runs this against its Postgres) from the built dist/console.
    curl -fsS "http://127.0.0.1:$port_http/console/" | grep -q "<title>authz console</title>" || { echo "the console is not served" >&2; exit 1; }
    curl -fsS "http://127.0.0.1:$port_http/console/main.js" >/dev/null || { echo "the console's modules are not served" >&2; exit 1; }
    echo "production install serves the console at /console/"
    kill -TERM "$pid"
    wait "$pid" || { echo "server did not exit cleanly on SIGTERM" >&2; exit 1; }
    chmod -R u+w "$work"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.5
done
echo "production install did not become ready; server log:" >&2
cat "$work/server.log" >&2
chmod -R u+w "$work"
exit 1
