#!/usr/bin/env bash
# Wall time of `dvc repro` on the current params, per stage, from nothing: removes data/ and DVC's cache and
# run-cache, then runs each stage alone (`dvc repro -s`) in pipeline order and prints seconds per stage.
# Usage: bash benchmarks/repro_time.sh   (after `make setup`; takes as long as the pipeline, ~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
rm -rf data .dvc/cache .dvc/tmp/runs
seconds_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf "%d.%d" $((ms / 1000)) $((ms % 1000 / 100)); }
total_start=$(date +%s%N)
for stage in generate@shape generate@texture generate@background distill@shape distill@texture \
             distill@background compose reference evaluate; do
  start=$(date +%s%N)
  dvc repro -s "$stage" > "/tmp/repro_time.$stage.log" 2>&1 || { cat "/tmp/repro_time.$stage.log"; exit 1; }
  printf '%-22s %7s s\n' "$stage" "$(seconds_since "$start")"
done
printf '%-22s %7s s\n' total "$(seconds_since "$total_start")"
