#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/ into OUT (default: a directory
# outside the repository; generated code is never committed).
#
#   clients/python/generate.sh [OUT]
#   PYTHONPATH=OUT /usr/bin/python3 clients/python/authz_client.py 127.0.0.1:50051
#
# The stubs import each other by proto file path (e.g. `from authz.v1 import
# common_pb2`), so OUT itself must be on sys.path. No __init__.py files are
# written: authz/ and google/ under OUT are namespace packages, which lets
# OUT/google/rpc sit beside the installed google.protobuf. The health proto is
# the exception: as OUT/grpc/health it would be hidden by the grpc package
# itself, so it is generated as grpc_health/v1 (the layout grpcio-health-checking
# uses): `from grpc_health.v1 import health_pb2_grpc`. Its wire names
# (grpc.health.v1.Health) do not change.
#
# Needs (Debian): apt-get install -y python3-grpcio protobuf-compiler protobuf-compiler-grpc
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-${TMPDIR:-/tmp}/authz-python-stubs}"
plugin="${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}"

if ! command -v protoc >/dev/null 2>&1 || [ -z "$plugin" ] || [ ! -x "$plugin" ]; then
  echo "generate.sh: protoc and grpc_python_plugin are required:" >&2
  echo "  apt-get install -y protobuf-compiler protobuf-compiler-grpc python3-grpcio" >&2
  exit 2
fi

mkdir -p "$out"
# Remove stubs of an earlier run (only what this script writes) so that a
# deleted .proto leaves nothing behind.
find "$out" -name '*_pb2.py' -delete -o -name '*_pb2_grpc.py' -delete

gen() { protoc "$@" --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin"; }

cd "$root/proto"
gen -I. authz/v1/*.proto google/rpc/*.proto

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/grpc_health/v1"
cp grpc/health/v1/health.proto "$tmp/grpc_health/v1/health.proto"
gen -I"$tmp" "$tmp/grpc_health/v1/health.proto"

echo "$out"
