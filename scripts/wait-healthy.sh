#!/usr/bin/env bash
# Waits (at most WAIT_SECONDS, default 120) until every node of the compose
# cluster answers and knows a leader.
set -euo pipefail
bin="${1:-bin/dnsplan}"
cluster="${DNSPLAN_CLUSTER:-127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003}"
deadline=$((SECONDS + ${WAIT_SECONDS:-120}))
until "$bin" ctl --cluster "$cluster" --timeout 3s health >/dev/null 2>&1; do
  if ((SECONDS >= deadline)); then
    echo "cluster not healthy after ${WAIT_SECONDS:-120}s:" >&2
    "$bin" ctl --cluster "$cluster" --timeout 3s health >&2 || true
    exit 1
  fi
  sleep 1
done
"$bin" ctl --cluster "$cluster" status
