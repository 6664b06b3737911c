"""Where an ImageNet student's forward time goes on one device: images/s of the profile's texture student in
each memory layout, in bf16 and as a replayed CUDA graph (on CUDA), against the stages' own way, then the
operators that take its time.

The first GPU run saw the students at 0.5 TFLOP/s, 4x the teacher's speed where the goal is 20x. A student
is ~160 small operators per forward (the CPU's profile), many of them depthwise convolutions in channels_last:
in that layout PyTorch hands every float32 depthwise convolution to cuDNN (`use_cudnn_depthwise` in ATen's
Convolution.cpp), whose grouped kernels have been reported slow (pytorch/pytorch#34977); in the contiguous
layout it runs its own depthwise kernel. One run on a GPU tells which holds a student back: the layout, the
arithmetic (bf16), or the kernel launches (a CUDA graph replays the whole forward as one launch). The stages
keep float32, whose images are stored (skdcgn.utils.device): bf16 here is a ceiling, not a proposal. The mask
student differs in its last convolution alone, so the texture student stands for all three.
Usage: python -m benchmarks.student_forward [--sizes 256 128] [--batch 32 128] [--repeats 3]
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import arguments, best_seconds, report, setup
from benchmarks.imagenet_speed import PROFILES, profile_student
from skdcgn.distillation.students import StudentGenerator
from skdcgn.teachers.cgn_imagenet import NUM_CLASSES, Z_DIM

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
STAGES_WAY = "channels_last float32"


def rates(student: StudentGenerator, z: torch.Tensor, y: torch.Tensor, repeats: int) -> dict[str, float]:
    """Label -> images/s of a forward of the batch (z, y) in each variant, the stages' way first. On CUDA also
    bf16, and last the CUDA graph: a capture that fails is reported in a comment line, after the other figures
    (a lent GPU is rare: they must come back whatever happens to it)."""
    device, on_gpu = z.device, z.device.type == "cuda"
    runs = {f"{name} float32": _in_layout(student, layout, z, y) for name, layout in LAYOUTS.items()}
    if on_gpu:
        runs |= {f"{name} bf16": _in_layout(student, layout, z, y, torch.bfloat16) for name, layout in LAYOUTS.items()}
    found = {label: len(y) / best_seconds(run, device, repeats) for label, run in runs.items()}
    if on_gpu:
        try:
            replay = _graphed(runs[STAGES_WAY])
            found[f"{STAGES_WAY} CUDA graph"] = len(y) / best_seconds(replay, device, repeats)
        except RuntimeError as error:
            print(f"# {STAGES_WAY} CUDA graph: not captured: {str(error).splitlines()[0]}")
    return found


def _in_layout(student: StudentGenerator, layout: torch.memory_format, z: torch.Tensor, y: torch.Tensor,
               dtype: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    def forward() -> torch.Tensor:
        student.layout = layout
        precision = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
        with precision, torch.no_grad():
            return student(z, y)
    return forward


def _graphed(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """`forward` captured once as a CUDA graph (after warm-up on a side stream, as capture requires): a replay
    launches the whole forward at once, so what it saves is the launch overhead."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward()
    return graph.replay


def measure(size: int, batches: list[int], device: torch.device, repeats: int, top: int) -> None:
    """One report per batch and variant (against the stages' way), then the operator table of the stages' way
    at the last batch given."""
    student = profile_student("texture", size).to(device).eval()
    for batch in batches:
        z = torch.randn(batch, Z_DIM, generator=torch.Generator().manual_seed(0)).to(device)
        y = (torch.arange(batch) % NUM_CLASSES).to(device)
        found = rates(student, z, y, repeats)
        for label, rate in found.items():
            if label != STAGES_WAY:
                report(f"{size}x{size} texture student, batch {batch}", {label: rate, STAGES_WAY: found[STAGES_WAY]},
                       (label, STAGES_WAY), "images/s")
    operators(_in_layout(student, torch.channels_last, z, y), device, top)


def operators(forward: Callable[[], object], device: torch.device, top: int) -> None:
    """The operators of a few forwards, by the device time they take."""
    on_gpu = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])) as profiler:
        for _ in range(3):
            forward()
        if on_gpu:
            torch.cuda.synchronize(device)
    order = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    print(f"# operators, {STAGES_WAY}, by {order}")
    print("\n".join(f"# {line}" for line in profiler.key_averages().table(sort_by=order, row_limit=top).splitlines()))


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[2], help="images per forward, one report each")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], choices=sorted(PROFILES))
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    parser.set_defaults(repeats=1)
    args = parser.parse_args()
    _, device = setup(args)
    for size in args.sizes:
        measure(size, args.batch, device, args.repeats, args.top)


if __name__ == "__main__":
    main()
