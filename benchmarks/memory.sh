#!/usr/bin/env bash
# Peak resident memory (RSS) of every stage, at params.yaml's sizes and at SCALE times the teacher samples
# (generate.per_class), measured with /usr/bin/time -v on a scratch copy of the committed project (HEAD).
# Training steps are cut to STEPS: a stage's memory does not grow with its steps, and the run stays short.
# DATA (memory | stream) sets train.data. /usr/bin/time reports the largest single process, not the sum with the
# stage's worker processes (forked: they share most of their pages with it).
# OVERLAY, a partial params.yaml (as a profile), is laid over params.yaml first; STAGES (environment) picks stages.
# Usage: bash benchmarks/memory.sh [SCALE=10] [STEPS=100] [DATA=memory] [OVERLAY]   (after `make setup`; ~10 min
# on 2 cores), e.g. STAGES="generate:texture distill:texture" bash benchmarks/memory.sh 10 10 stream large.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
scale="${1:-10}" steps="${2:-100}" data="${3:-memory}" overlay="$(realpath "${4:-/dev/null}")"
stages="${STAGES:-generate:shape generate:texture generate:background distill:shape distill:texture
         distill:background compose reference evaluate}"
for factor in 1 "$scale"; do
  scratch="$(mktemp -d)"
  git archive HEAD | tar -x -C "$scratch"
  (
    cd "$scratch"
    python - "$factor" "$steps" "$data" "$overlay" <<'PY'
import sys, yaml
from pipeline.profile import merged
factor, steps, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
params = merged(yaml.safe_load(open("params.yaml")), yaml.safe_load(open(sys.argv[4])) or {})
params["generate"]["per_class"] *= factor
params["train"]["data"] = data
for im in params["ims"]:
    params["ims"][im]["steps"] = steps
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
PY
    per_class="$(python -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["generate"]["per_class"])')"
    for stage in $stages; do
      module="${stage%%:*}" im="${stage#*:}"
      [ "$im" = "$stage" ] && im=""
      /usr/bin/time -v python -m "pipeline.$module" $im > /tmp/memory.log 2>&1 || { tail /tmp/memory.log; exit 1; }
      kib="$(grep 'Maximum resident set size' /tmp/memory.log | awk '{print $NF}')"
      printf 'per_class %-6s %-22s %6d MiB\n' "$per_class" "$stage" $((kib / 1024))
    done
  )
  rm -rf "$scratch"
done
