"""Thin DVC stage scripts: read params, call the `skdcgn` library, write outputs, metrics and plots.

Runs before any stage imports torch, so it is where the CPU kernels are chosen. oneDNN (the convolutions) and
ATen (most other operators) pick their kernels by the CPU's instruction set, and their AVX-512 kernels add in
another order than their AVX2 ones. With the same locked packages, an AVX-512 host trained the default shape
student to 0.8266 mask IoU where the AVX2 host of the committed dvc.lock had 0.8275 (oneDNN's kernels), and the
teacher-counterfactual classifier to 0.919 OOD accuracy instead of 0.9145 (ATen's). Capped at AVX2 (every x86-64
CPU since 2013 has it), both hosts gave the committed bytes, and the steps were no slower. Set the variables
yourself to choose otherwise.

MKL (torch's BLAS: the linear layers, einsum, the class means' sums) ignores both caps and picks its own kernels
by CPU: on an AVX-512 Intel host its AVX-512 ones gave other teacher samples' class means than the AVX2 host of
the committed dvc.lock; capped at AVX2 too, the same bytes.

torch.compile's CPU kernels are built against ATen's vector width, but its on-disk cache does not key on it: a
kernel cached by an uncapped process crashed a capped one (segmentation fault). Capped processes keep their own
cache.
"""

import os
import tempfile

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
compiled_kernels = f"torchinductor_{os.getuid()}_{os.environ['ATEN_CPU_CAPABILITY']}"
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), compiled_kernels))
