#!/usr/bin/env bash
# Run the test FHIR server (Medplum's engine in memory, tests/fhirserver/server.js) by hand, for QA
# and development. Ctrl-C stops it; nothing is stored on disk.
#
#   scripts/fhir-server.sh [--port 8081] [--load FILE.json[.gz] ...]
#   scripts/fhir-server.sh --load ../shared/data/synthea-r4/*.json.gz
#
# The bearer token comes from FHIR_TOKEN (default: dev-token). Then, for example:
#   curl -H 'Authorization: Bearer dev-token' \
#     'http://127.0.0.1:8081/fhir/R4/Observation?patient=Patient/<id>&category=vital-signs&_sort=-date'
#   curl -X POST localhost:8081/_control/fault -d '{"mode": "slow", "delay_ms": 3000}'
# Control endpoints and fault modes are described at the top of tests/fhirserver/server.js.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/tests/fhirserver"

port=8081
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --load) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do files+=("$1"); shift; done ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v node >/dev/null || { echo "node not found: install Node.js 20" >&2; exit 1; }
[ -f "$dir/node_modules/@medplum/fhir-router/package.json" ] \
  || (cd "$dir" && npm ci --silent --no-audit --no-fund)

export FHIR_TOKEN="${FHIR_TOKEN:-dev-token}"
node "$dir/server.js" --port "$port" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 100); do
  curl -sf --noproxy "*" "http://127.0.0.1:$port/_control/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || exit 1
  sleep 0.1
done
for f in "${files[@]}"; do
  printf 'loading %s: ' "$f"
  case "$f" in
    *.gz) zcat "$f" ;;
    *) cat "$f" ;;
  esac | curl -sS --noproxy "*" -X POST -H 'Content-Type: application/json' --data-binary @- \
    "http://127.0.0.1:$port/_control/load"
  echo
done
echo "FHIR base: http://127.0.0.1:$port/fhir/R4  (token: \$FHIR_TOKEN; Ctrl-C to stop)"
wait "$pid"
