#!/usr/bin/env bash
# The wheels benchmarks/gpu.sh needs beyond a PyTorch image (its Python 3.12, x86-64 Linux), fetched into .whl/
# on a machine that reaches a package index, at the versions this project's environment holds.
# Usage: bash benchmarks/gpu_wheels.sh   (then carry .whl/ along to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# The second line: the ImageNet CGN teacher's extra and what pytorch-pretrained-biggan imports.
for package in pydantic pydantic_core annotated_types typing_inspection typing_extensions webdataset braceexpand \
    pytorch_pretrained_biggan scipy boto3 botocore s3transfer jmespath python_dateutil six urllib3 requests idna \
    charset_normalizer certifi tqdm; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$package==$(version "$package")"
done
ls .whl
