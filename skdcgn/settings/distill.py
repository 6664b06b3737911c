"""`loss`, `train` and `ims`: how each student is trained (stage distill)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.fields import FieldInfo

from skdcgn.settings.schema import Beta, Count, NonNegative, NonNegativeInt, Positive, Settings, Widths


class LossSettings(Settings):
    """`loss`: the generator objective's weights and forms (skdcgn/distillation/losses.py)."""

    pixel: Literal["l1", "l2"] = "l1"
    pixel_weight: NonNegative = 1.0
    adversarial_weight: NonNegative = 0.01
    feature_weight: NonNegative = 1.0
    kl_weight: NonNegative = 0.0
    kl_temperature: Positive = 4.0
    # Where the KL term compares teacher and student: every discriminator layer, weighted like the feature loss
    # (the seed code's intent); the deepest layer only; or the output images as distributions over positions.
    kl_on: Literal["features", "last_layer", "pixels"] = "features"

    @property
    def needs_discriminator(self) -> bool:
        """False for an objective of pixel terms only: training then skips the discriminator's whole cost."""
        kl_on_features = self.kl_weight > 0 and self.kl_on != "pixels"
        return bool(self.adversarial_weight or self.feature_weight or kl_on_features)


class TrainSettings(Settings):
    """`train` (and, key by key, `ims.<im>`): how one student is trained."""

    steps: Count = 1000
    batch_size: Count = 64
    lr: Positive = 1e-3
    betas: Annotated[list[Beta], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    lr_decay: Literal["cosine", "constant"] = "cosine"
    log_every: Count = 50
    eval_every: Count = 500
    student_widths: Widths = [64, 64, 32, 16]
    class_embedding: NonNegativeInt = 0  # 0: one-hot classes (few classes); else a learned embedding of this size
    disc_widths: Widths = [16, 32, 64]
    grad_clip: NonNegative = 0.0  # max total gradient norm per update of G and of D; 0 = off
    # Steps between resumable checkpoints; each is written at the first log step that many steps after the last.
    checkpoint_every: Count = 250
    # A log window whose mean |discriminator logit| exceeds this stops training (the hinge loss stops pulling at
    # |logit| 1, so healthy logits stay small); 0 = off.
    max_disc_logit: NonNegative = 1000.0
    # Where batches come from: `memory` (the whole dataset decoded once; MNIST-size) or `stream` (read from the
    # shards as training goes, through `loader_workers` processes and a `shuffle_buffer` of samples). The batch
    # order differs between them, and, for streams, with the number of workers.
    data: Literal["memory", "stream"] = "memory"
    loader_workers: NonNegativeInt = 1
    shuffle_buffer: Count = 2000
    # torch.compile the student and the discriminator. It did not pay on the CPU (BENCHMARKS.md); it is meant for
    # GPUs, where small kernels are launch-bound. Numerics differ slightly from eager.
    compile: bool = False


def _overrides_of(model: type[Settings], name: str) -> type[Settings]:
    """A model with the fields and rules of `model`, every one optional: what was set is what overrides. `name`
    is the module attribute it is bound to, so that pickle finds the class (params travel to helper processes)."""
    from pydantic import create_model

    fields = {field: (info.annotation, FieldInfo.merge_field_infos(info, default=None))
              for field, info in model.model_fields.items()}
    return create_model(name, __base__=Settings, __module__=__name__, **fields)


TrainOverrides = _overrides_of(TrainSettings, "TrainOverrides")
LossOverrides = _overrides_of(LossSettings, "LossOverrides")


class MechanismOverrides(TrainOverrides):
    """`ims.<im>`: any `train` key, and under `loss` any `loss` key, for this mechanism's student alone (the
    studies found that the objective that helps the colour students does not help the shape's)."""

    loss: LossOverrides = LossOverrides()
