"""Teacher samples for one mechanism: (z, y) -> teacher image, stored together as shards."""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.mechanisms import VALUE_RANGE
from skdcgn.settings.generate import GenerateSettings
from skdcgn.shards.codec import ImageCodec
from skdcgn.shards.format import HostPixels
from skdcgn.shards.parts import Part
from skdcgn.shards.writer import ShardWriter, writing_dataset
from skdcgn.teachers.base import Teacher
from skdcgn.teachers.noise import NoiseStream


def class_balanced_labels(per_class: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: every shard (and every prefix) holds all classes in equal measure."""
    return torch.arange(per_class * num_classes) % num_classes


def storage_codec(settings: GenerateSettings, im: str) -> ImageCodec:
    """The codec `generate` stores mechanism `im` with."""
    return ImageCodec(format=getattr(settings.image_format, im), quality=settings.jpeg_quality)


def sample_teacher(teacher: Teacher, im: str, directory: Path, per_class: int, generator: torch.Generator,
                   settings: GenerateSettings, *, advance=None, resume: bool = False, writers: int = 0,
                   class_means: bool = True, part: Part = Part()) -> None:
    """Teacher images for class-balanced labels and seeded noise, on the teacher's device, in shards of
    `settings.shard_size` from forward batches of `settings.batch_size`, stored as `settings` says for `im`.
    With `class_means`, the mean image per class is summed as they are written (a training set's: the baseline).
    With `resume`, the whole shards a killed run (or the parts) left in the partial directory are kept and only
    the missing ones are sampled (the caller checks they are ours). As one `part` of several processes, only that
    part's shards (shards.parts); a lone run with `resume` then joins them. `writers` worker processes encode the
    shards while the teacher runs (0: in this process)."""
    codec = storage_codec(settings, im)
    labels = class_balanced_labels(per_class, teacher.num_classes)
    # The noise is drawn on the CPU, in order, whatever is sampled: a resumed run, a part, or a run on another
    # device hands the teacher the same z as an uninterrupted one.
    noise = NoiseStream(len(labels), teacher.z_dims[im], generator, teacher.truncation)
    info = {"im": im, "teacher": teacher.identity(), "teacher_parameters": teacher.num_parameters(im)}
    size = settings.shard_size
    with writing_dataset(directory, resume=resume, part=part, shard_size=size, value_range=VALUE_RANGE[im],
                         info=info, writers=writers, codec=codec, total=len(labels),
                         num_classes=teacher.num_classes if class_means else 0) as writer:
        todo = set(writer.missing())
        if advance:
            advance(part.samples(len(labels), size) - sum(min(size, len(labels) - k * size) for k in todo))
        # The batch grid stays that of an uninterrupted run: the teacher sees the same batches, the same bytes;
        # a batch none of whose shards is to be written is not run. A batch is written while the teacher runs
        # the next one (on a GPU: HostPixels copies without waiting).
        queued: list[tuple[int, int, HostPixels, torch.Tensor]] = []
        for start in range(0, len(labels), settings.batch_size):
            stop = min(start + settings.batch_size, len(labels))
            pieces = [(max(start, k * size), min(stop, (k + 1) * size))
                      for k in range(start // size, (stop - 1) // size + 1) if k in todo]
            if not pieces:
                continue
            z = noise.rows(start, stop)
            images = teacher(im, z, labels[start:stop])
            batch = [(first, last, HostPixels(images[first - start:last - start], VALUE_RANGE[im]),
                      z[first - start:last - start]) for first, last in pieces]
            _write(writer, queued, labels, advance)
            queued = batch
        _write(writer, queued, labels, advance)


def _write(writer: ShardWriter, pieces: list[tuple[int, int, HostPixels, torch.Tensor]], labels: torch.Tensor,
           advance) -> None:
    """Samples first..last-1 of each piece, with the noise and labels they were made from."""
    for first, last, pixels, z in pieces:
        writer.add_batch([f"{i:08d}" for i in range(first, last)], labels[first:last], pixels, {"z": z},
                         first=first)
        if advance:
            advance(last - first)
