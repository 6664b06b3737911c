#!/usr/bin/env bash
# Everything a machine with a GPU can measure for this project, in one go: a lent GPU is rare, so one short run
# must bring back every figure. It runs the tests that take a `device` on CUDA (teachers, students, training,
# composition, classifiers) and the benchmarks on CUDA at the ImageNet CGN's size (1,000 classes, 256x256: the
# CGN itself with random weights, and the synthetic teacher), and writes what they print, with the machine and
# library versions, to OUT/gpu-figures.md.
#
#   bash benchmarks/gpu.sh [OUT]           # default OUT: gpu-results; at most GPU_BUDGET_S (540) seconds
#
# Python needs torch and the project's dependencies. Where no package index can be reached (this workplace's
# device machines), fetch the missing wheels first with `bash benchmarks/gpu_wheels.sh` on a machine that can
# and bring the .whl/ folder along: they are installed from there. Tests that read the real teachers find them
# where `skdcgn fetch` puts them (teachers/cgn-mnist/, mnist/, textures/): bring those folders along too.
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
export PYTHONUNBUFFERED=1 SKDCGN_THREADS="${SKDCGN_THREADS:-8}" SKDCGN_WRITERS="${SKDCGN_WRITERS:-8}"

# The whole run fits GPU_BUDGET_S seconds (default 540: one device call of this workplace, with time left to
# copy the report back): each step gets its own limit or what is left, whichever is less, and the steps come
# in order of how rare their figures are.
budget="${GPU_BUDGET_S:-540}"

# One fenced section per step: its output, exit code and seconds; a failing step does not stop the others.
step() {
  local limit="$1" title="$2"
  shift 2
  local left=$((budget - SECONDS))
  [ "$left" -lt "$limit" ] && limit="$left"
  printf '\n## %s\n\n```\n$ %s\n' "$title" "$*" >> "$report"
  if [ "$limit" -le 10 ]; then
    printf '(skipped: the time budget is spent)\n```\n' >> "$report"
    return
  fi
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

# What holds a student back (the first GPU run saw 0.5 TFLOP/s): its memory layout (in channels_last PyTorch
# hands every float32 depthwise convolution to cuDNN, in the contiguous layout to its own depthwise kernel),
# float32 (bf16 as a ceiling), kernel launches (a CUDA graph), and which kernels take the time. First: it needs no
# checkpoint and is the cheapest.
step 60 "An ImageNet student's forward: layouts, bf16, a CUDA graph, its kernels" "$python" -m \
  benchmarks.student_forward --sizes 256 128 --batch 32 128 --repeats 3
# The ImageNet CGN with random full-size weights (speed does not depend on them): teacher against students,
# then the generate stage's path against the raw forward, 1,000 samples (one per class) per mechanism.
checkpoint="$out/cgn-random.pth"
step 60 "A full-size ImageNet CGN checkpoint with random weights" "$python" -c \
  "import sys; from pathlib import Path; from benchmarks.imagenet_speed import random_checkpoint; \
random_checkpoint(Path(sys.argv[1]))" "$checkpoint"
# The first GPU run saw the students at 0.5 TFLOP/s at batch 32: a larger batch, and the same without the
# stages' deterministic algorithms, tell whether kernel launches or deterministic kernels hold them back.
step 200 "ImageNet CGN (random full-size weights) against the profiles' students, per mechanism, 256 and 128" \
  "$python" -m benchmarks.imagenet_speed --checkpoint "$checkpoint" --batch 32 128 --repeats 3
step 90 "Teacher against students at 256, without deterministic algorithms" "$python" -m benchmarks.imagenet_speed \
  --checkpoint "$checkpoint" --sizes 256 --batch 32 128 --repeats 2 --nondeterministic
step 120 "ImageNet CGN teacher sampling into shards (profile cgn-imagenet, 1,000 samples per mechanism)" \
  "$python" -m benchmarks.shard_writing --profile cgn-imagenet --set "teacher.cgn-imagenet.checkpoint=$checkpoint" \
  --set generate.per_class=1 --set generate.shard_size=250 --repeats 2
rm -f "$checkpoint"
# A 256x256 student's training step, where its GPU time goes, with and without deterministic algorithms (the
# first GPU run saw 2 steps/s at batch 64).
for determinism in "" --nondeterministic; do
  step 60 "Profile of a 256x256 texture student's step (bf16) $determinism" "$python" -m benchmarks.step_profile \
    "${large[@]}" --im texture --steps 10 --matmul-size 8192 $determinism
done
# pipeline.report (collected, not run, with `-m device`) imports dvc, which a bare GPU image lacks.
step 120 "Tests on CUDA (-m device -k cuda)" "$python" -m pytest -q -p no:cacheprovider -m device -k cuda \
  --ignore tests/test_report.py tests
step 60 "Synthetic teacher sampling into shards, 256x256, 1,000 classes" "$python" -m benchmarks.shard_writing \
  "${large[@]}" --set generate.per_class=2 --repeats 1
step 60 "Students against the teacher, 256x256 counterfactuals" "$python" -m benchmarks.student_speed \
  "${large[@]}" --set compose.n=2000 --set compose.batch_size=250
# 2,000 training samples in 20 shards (8 loader workers need at least 8), 1,000 held out.
train=(--im texture --steps 20 --repeats 1 --set generate.per_class=2 --set generate.heldout_per_class=1
       --set generate.shard_size=100 --set train.batch_size=64)
step 90 "Distillation steps, 256x256 texture student (bf16), from shards and from memory" \
  "$python" -m benchmarks.training_input "${large[@]}" "${train[@]}"
step 60 "The same, streamed by 8 loader workers" "$python" -m benchmarks.training_input "${large[@]}" \
  "${train[@]}" --set train.data=stream --set train.loader_workers=8
step 60 "The default 32x32 students (params.yaml), shape" "$python" -m benchmarks.training_input --im shape \
  --steps 100 --repeats 1
echo "wrote $report"
