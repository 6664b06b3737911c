"""Where a training step's time goes: one student's GAN step at the params' sizes, its FLOPs and achieved GFLOP/s
next to a dense matrix product's on the same thread, and the operators that take the time.

A step (discriminator phase, then generator phase, as `distill` runs it) is timed on random teacher images:
speed does not depend on what the images show. FLOPs are PyTorch's FlopCounterMode count (2 x multiply-adds)
of forward and backward; the matmul is square float32 of `--matmul-size` on the same device, the best it does
on dense work. On CUDA the operators are sorted by GPU time (`--nondeterministic`: without the stages'
deterministic algorithms, to see what they cost there).
Usage: SKDCGN_THREADS=1 python -m benchmarks.step_profile --im shape [--steps 30] [--set loss.feature_weight=0]
"""

from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import arguments, setup, synchronise
from skdcgn.distillation.gan_step import GANStep
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator, count_parameters
from skdcgn.mechanisms import CHANNELS, IMS, VALUE_RANGE
from skdcgn.teachers.registry import make_teacher


def matmul_gflops(size: int, device: torch.device, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    synchronise(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronise(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--im", choices=IMS, default="shape")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up steps)")
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    args = parser.parse_args()
    params, device = setup(args)
    teacher = make_teacher(params.teacher)
    settings = params.train_for(args.im)
    student = StudentGenerator(args.im, teacher.z_dims[args.im], teacher.num_classes, teacher.image_size,
                               settings.student_widths, settings.class_embedding).to(device)
    disc = ProjectionDiscriminator(CHANNELS[args.im], teacher.num_classes, settings.disc_widths).to(device)
    sizes = f"student {count_parameters(student):,} params, discriminator {count_parameters(disc):,}"
    gan = GANStep(student, disc, params.loss_for(args.im), settings, device)
    batch = settings.batch_size
    lo, hi = VALUE_RANGE[args.im]
    z = torch.randn(batch, teacher.z_dims[args.im], device=device)
    y = torch.randint(teacher.num_classes, (batch,), device=device)
    real = lo + (hi - lo) * torch.rand(batch, CHANNELS[args.im], teacher.image_size, teacher.image_size,
                                       device=device)

    for _ in range(5):
        gan(z, y, real)
    with FlopCounterMode(display=False) as counter:
        gan(z, y, real)
    flops = counter.get_total_flops()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        gan(z, y, real)
    synchronise(device)
    seconds = (time.perf_counter() - start) / args.steps
    dense = matmul_gflops(args.matmul_size, device)
    print(f"{args.im}: {sizes}, batch {batch}, {'with' if gan.uses_disc else 'without'} discriminator")
    print(f"step {seconds * 1e3:.1f} ms, {flops / 1e9:.3f} GFLOP -> {flops / seconds / 1e9:.1f} GFLOP/s; "
          f"dense {args.matmul_size}^3 matmul {dense:.1f} GFLOP/s on the same thread(s): "
          f"{flops / seconds / 1e9 / dense:.0%} of it")
    on_gpu = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])) as profiler:
        for _ in range(5):
            gan(z, y, real)
        synchronise(device)
    order = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=order, row_limit=args.top))


if __name__ == "__main__":
    main()
