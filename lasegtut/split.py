"""Splitting cases into training and validation, by subject and never by slice.

Slices of one scan are nearly identical to their neighbours: a split by slice puts copies of
the validation images in the training set and reports a Dice the model has not earned.
Worse, MSD Task02_Heart holds one scan twice: ``la_005`` and ``la_026`` are the same image
with labels drawn by two annotators. :func:`group_identical` finds such duplicates by hashing
the voxels, and :func:`split_cases` keeps every group on one side.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from .errors import LasegError


def group_identical(hashes: Mapping[str, str]) -> list[list[str]]:
    """Group case ids whose image hashes are equal; groups and members sorted by case id."""
    groups: dict[str, list[str]] = {}
    for cid in sorted(hashes):
        groups.setdefault(hashes[cid], []).append(cid)
    return sorted(groups.values())


def split_cases(case_ids: Sequence[str], hashes: Mapping[str, str] | None = None, *,
                val_cases: Iterable[str] | None = None, val_fraction: float = 0.2,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """Split cases into (train, validation) so that identical images never straddle the split.

    Args:
        case_ids: all case ids.
        hashes: case id -> image hash (see :func:`lasegtut.data.image_hash`); cases missing
            from it are treated as unique.
        val_cases: a fixed validation set (e.g. the three bundled cases). Any case whose image
            is identical to one of them joins validation too.
        val_fraction: with no ``val_cases``, the fraction of *groups* drawn for validation.
        seed: random seed for that draw.

    Returns:
        Sorted ``(train, val)`` lists.
    """
    ids = sorted(set(case_ids))
    hashes = {c: (hashes or {}).get(c, f"unique:{c}") for c in ids}
    groups = group_identical(hashes)
    if val_cases is not None:
        wanted = set(val_cases)
        missing = wanted - set(ids)
        if missing:
            raise LasegError(f"validation cases {sorted(missing)} are not in the data set")
        val_groups = [g for g in groups if wanted & set(g)]
    else:
        if not 0 < val_fraction < 1:
            raise LasegError(f"val_fraction must be in (0, 1), got {val_fraction}")
        rng = random.Random(seed)
        order = groups[:]
        rng.shuffle(order)
        n_val = max(1, round(val_fraction * len(groups)))
        val_groups = order[:n_val]
    val = sorted(c for g in val_groups for c in g)
    train = sorted(c for c in ids if c not in set(val))
    return train, val
