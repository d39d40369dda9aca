"""The errors every stage may raise. ``cli.stage_main`` turns the known ones into one 'error:' line
and exit code 2, so a bad parameter or unusable data never leaves a traceback or partial outputs."""
from __future__ import annotations


class ParamError(ValueError):
    """A parameter in params.yaml is missing or invalid."""


class DataError(RuntimeError):
    """The data cannot satisfy the parameters (too few images, leakage)."""


class LeakageError(DataError):
    """A source image (or one of its variants) sits on both sides of a split."""


class FetchError(RuntimeError):
    """The raw images cannot be fetched."""


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


class ImageRejected(Exception):
    """An input file that is not a usable image; ``reason`` is one of the names in ``imaging``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


KNOWN_ERRORS = (ParamError, DataError, FetchError, WeightsUnavailable)


def assert_disjoint(groups_a, groups_b, where: str) -> None:
    """Raise LeakageError if any source image is on both sides of a split."""
    shared = set(groups_a) & set(groups_b)
    if shared:
        example = sorted(shared)[0]
        raise LeakageError(f"leakage: {len(shared)} source image(s) on both sides of {where}, e.g. {example}")
