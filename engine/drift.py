"""Drift of a batch: does it hold more anomalies than a batch drawn like the reference would?

A detector calibrated at the ``p``-th percentile flags a share ``1 - p/100`` of items drawn like
its reference; in a batch of ``n`` items the number flagged is then binomial. ``drift`` compares
the count seen with that expectation by scipy's exact binomial test (two-sided: too few flagged
is news too, e.g. a reference that no longer resembles what arrives), for the batch as a whole,
for each value of a field (which sections drifted), or for each of a collection's runs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["DriftRow", "drift", "drift_by"]


@dataclass(frozen=True)
class DriftRow:
    """``flagged`` of ``items`` past the threshold, their ``share``, the ``expected`` share, and
    the binomial test's two-sided ``p_value`` (small: the batch is not drawn like the reference)."""

    group: str
    items: int
    flagged: int
    share: float
    expected: float
    p_value: float


def drift(group: str, items: int, flagged: int, expected: float) -> DriftRow:
    """One row: ``flagged`` of ``items`` against the ``expected`` share (0-1)."""
    from scipy.stats import binomtest

    p_value = float(binomtest(flagged, items, expected).pvalue) if items else 1.0
    return DriftRow(group, items, flagged, flagged / items if items else 0.0, expected, p_value)


def drift_by(values: Sequence[Hashable], flags: Sequence[bool], expected: float
             ) -> list[DriftRow]:
    """One row per distinct value (e.g. each item's section), most flagged share first."""
    counts: dict[str, list[int]] = {}
    for value, flag in zip(values, flags, strict=True):
        count = counts.setdefault(str(value), [0, 0])
        count[0] += 1
        count[1] += bool(flag)
    rows = [drift(value, n, k, expected) for value, (n, k) in counts.items()]
    return sorted(rows, key=lambda r: (-r.share, r.p_value, r.group))
