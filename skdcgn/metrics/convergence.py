"""When a run got there: "converges faster" as a number read off a (step, value) curve."""

from __future__ import annotations


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first step of a (step, value) curve at which value >= target; None when it never gets there."""
    return next((step for step, value in curve if value >= target), None)


def steps_to_gain(curve: list[tuple[int, float]], baseline: float, fraction: float = 0.95) -> int:
    """Steps a run took to win `fraction` of its final gain over the class-mean baseline. Scale-free (IoU and
    dB alike); a run that never beat the baseline counts its last step."""
    final = curve[-1][1]
    return steps_to_reach(curve, baseline + fraction * max(final - baseline, 0.0)) or curve[-1][0]
