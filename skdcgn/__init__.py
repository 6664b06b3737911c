"""SKDCGN: distill a black-box Counterfactual Generative Network into one small student GAN per mechanism.

The package is laid out by role (docs/pipeline.md); every `__init__.py` holds only its docstring, so that a stage
depends on exactly the modules it imports (dvc.yaml):

    teachers/         the black boxes (z, y) -> image: interface, lazy registry, kinds, sampling into shards
    shards/           the on-disk format: codec, tar, writing (worker processes, resume), validation, streaming
    distillation/     students, losses, the GAN step, held-out fidelity, the loop
    training/         machinery any loop needs: resumable state, divergence checks, data parallelism, schedules
    counterfactuals/  composition, counterfactual inputs, mask changes, students -> counterfactual shards
    evaluation/       the classifier protocol (train on counterfactuals, test out of distribution)
    metrics/          fidelity metrics (a registry), convergence, the class-mean baseline
    mnist/            the MNIST domain: IDX files, the colored / double-colored / wildlife variants, the digit CNN
    utils/            atomic writes, seeds, hashing, progress, image grids, devices
    fetch/            the real assets (teachers, digits, textures): their sha256, origins, download and copy
    settings/         the params schema (pydantic): every knob's rule, a module per section of params.yaml
    mechanisms.py     the three mechanisms and their images' channels and value ranges
"""
