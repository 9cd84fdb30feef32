#!/usr/bin/env bash
# The README's start-up figures: run from a fresh clone after `npm ci`.
# Times `npm start` (embedded default, demo data) until its log says SERVING,
# and `npx authz --help`, each three times; prints one line per run.
# Free ports are used so a server already on 50051/8080 does not interfere.
set -euo pipefail
cd "$(dirname "$0")/.."
ms() { date +%s%3N; }
for run in 1 2 3; do
  grpc=$((20000 + RANDOM % 20000)); http=$((grpc + 1))
  log=$(mktemp)
  start=$(ms)
  AUTHZ_GRPC_PORT=$grpc AUTHZ_HTTP_PORT=$http setsid npm start >"$log" 2>&1 &
  pid=$!
  until grep -q '"msg":"SERVING"' "$log"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  echo "npm start → SERVING: $(( $(ms) - start )) ms (run $run)"
  kill -TERM -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
done
for run in 1 2 3; do
  start=$(ms)
  npx authz --help >/dev/null
  echo "npx authz --help: $(( $(ms) - start )) ms (run $run)"
done
