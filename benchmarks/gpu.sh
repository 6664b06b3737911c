#!/usr/bin/env bash
# Everything a machine with a GPU can measure for this project, in one go: a lent GPU is rare, so one short run
# must bring back every figure. It runs the tests that take a `device` on CUDA (teachers, students, training,
# composition, classifiers), then the benchmarks on CUDA at the ImageNet CGN's size (1,000 classes, 256x256,
# synthetic teacher), and writes what they print, with the machine and library versions, to OUT/gpu-figures.md.
#
#   bash benchmarks/gpu.sh [OUT]           # default OUT: gpu-results; about 5 minutes on one H200
#
# Python needs torch and the project's dependencies. Where no package index can be reached (this workplace's
# device machines), fetch the missing wheels first with `bash benchmarks/gpu_wheels.sh` on a machine that can
# and bring the .whl/ folder along: they are installed from there. Tests that read the real teachers look in
# SKDCGN_SHARED (default: ../shared, else .shared/ when a copy of shared/ travels inside the checkout).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
mkdir -p "$out"
report="$out/gpu-figures.md"
python=python3
if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/skdcgn-site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/skdcgn-site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
[ -d ../shared ] || export SKDCGN_SHARED="${SKDCGN_SHARED:-$PWD/.shared}"
export PYTHONUNBUFFERED=1 SKDCGN_THREADS="${SKDCGN_THREADS:-8}" SKDCGN_WRITERS="${SKDCGN_WRITERS:-8}"

# One fenced section per step: its output, exit code and seconds; a failing step does not stop the others.
step() {
  local limit="$1" title="$2"
  shift 2
  printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" >> "$report"
  local start=$SECONDS
  timeout "$limit" "$@" >> "$report" 2>&1
  printf '(exit %s, %s s)\n```\n' "$?" "$((SECONDS - start))" >> "$report"
}

{
  echo "# GPU figures ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$python" -c "import torch, platform; print('python', platform.python_version(), '| torch', torch.__version__,
'| cuda', torch.version.cuda, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
  nproc
} > "$report" 2>&1

# At the ImageNet CGN's size: 1,000 classes, 256x256; students from 8x8 up to 256x256 with a
# learned class embedding.
large=(--set teacher.synthetic.num_classes=1000 --set teacher.synthetic.image_size=256
       --set "train.student_widths=[256, 256, 128, 64, 32, 16]" --set train.class_embedding=128
       --set "train.disc_widths=[32, 64, 128, 256, 512]"
       --set generate.batch_size=500 --set generate.shard_size=1000 --repeats 2)

step 300 "Tests on CUDA (-m device -k cuda)" "$python" -m pytest -q -p no:cacheprovider -m device -k cuda \
  --continue-on-collection-errors tests
step 150 "Teacher sampling into shards, 256x256, 1,000 classes" "$python" -m benchmarks.shard_writing \
  "${large[@]}" --set generate.per_class=4
step 120 "Students against the teacher, 256x256 counterfactuals" "$python" -m benchmarks.student_speed \
  "${large[@]}" --set compose.n=2000 --set compose.batch_size=250
step 240 "ImageNet CGN (random full-size weights) against the profiles' students, per mechanism, 256 and 128" \
  "$python" -m benchmarks.imagenet_speed --batch 32 --repeats 3
# 2,000 training samples in 20 shards (8 loader workers need at least 8), 1,000 held out.
train=(--im texture --steps 100 --set generate.per_class=2 --set generate.heldout_per_class=1
       --set generate.shard_size=100 --set train.batch_size=64)
step 150 "Distillation steps, 256x256 texture student (bf16), from shards and from memory" \
  "$python" -m benchmarks.training_input "${large[@]}" "${train[@]}"
step 150 "The same, streamed by 8 loader workers" "$python" -m benchmarks.training_input "${large[@]}" \
  "${train[@]}" --set train.data=stream --set train.loader_workers=8
step 120 "The default 32x32 students (params.yaml), shape" "$python" -m benchmarks.training_input --im shape \
  --steps 500
echo "wrote $report"
