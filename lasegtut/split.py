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


def kfold_cases(case_ids: Sequence[str], hashes: Mapping[str, str] | None = None, n_folds: int = 5,
                seed: int = 0) -> list[list[str]]:
    """Grouped k-fold cross-validation: the cases split into ``n_folds`` disjoint folds by subject.

    Every group of identical images (:func:`group_identical`: la_005 and la_026 in MSD
    Task02_Heart) lands in one fold, so no model is validated on an image it was trained on.
    Groups are shuffled with ``seed`` (:class:`random.Random`, the same folds on every machine
    and Python version), then each goes, largest groups first, to the fold that holds the fewest
    cases so far (ties: the lowest fold number), which keeps fold sizes within one case of each
    other when the groups are single cases.

    Args:
        case_ids: all labelled case ids (every one of them is in exactly one fold).
        hashes: case id -> image hash (see :func:`lasegtut.data.image_hash`); cases missing
            from it are treated as unique.
        n_folds: number of folds, at least 2 and at most the number of groups (subjects).
        seed: random seed of the shuffle.

    Returns:
        ``n_folds`` sorted lists of case ids; fold ``k`` is the validation set of run ``k``.

    Raises:
        LasegError: fewer than 2 folds, or fewer subjects than folds.
    """
    if not (isinstance(n_folds, int) and n_folds >= 2):
        raise LasegError(f"the number of folds must be a whole number >= 2, not {n_folds}")
    ids = sorted(set(case_ids))
    hashes = {c: (hashes or {}).get(c, f"unique:{c}") for c in ids}
    groups = group_identical(hashes)
    if len(groups) < n_folds:
        dup = f" ({len(ids)} cases, identical images counted once)" if len(groups) < len(ids) else ""
        raise LasegError(f"{n_folds} folds need at least {n_folds} labelled subjects, but only {len(groups)} "
                         f"are at hand{dup}; use fewer folds or more data (lasegtut download)")
    order = groups[:]
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for g in order:
        min(folds, key=len).extend(g)  # min() returns the first (lowest-numbered) of equal folds
    return [sorted(f) for f in folds]


def fold_split(case_ids: Sequence[str], hashes: Mapping[str, str] | None = None, n_folds: int = 5,
               fold: int = 0, seed: int = 0) -> tuple[list[str], list[str], list[list[str]]]:
    """``(train, val, folds)`` of run ``fold`` (0-based) of a grouped ``n_folds``-fold
    cross-validation (:func:`kfold_cases`): ``val`` is fold ``fold``, ``train`` every other case.

    Raises:
        LasegError: ``fold`` is not in ``0 .. n_folds - 1``, or as :func:`kfold_cases`.
    """
    folds = kfold_cases(case_ids, hashes, n_folds, seed)
    if not (isinstance(fold, int) and 0 <= fold < n_folds):
        raise LasegError(f"fold {fold} does not exist: with {n_folds} folds give a fold from 0 to {n_folds - 1}")
    val = folds[fold]
    train = sorted(c for f in folds for c in f if c not in set(val))
    return train, val, folds


def describe_folds(folds: Sequence[Sequence[str]], fold: int | None = None) -> str:
    """The folds as text, one line each (``fold 0: la_003 la_011 ...``), the validation fold of
    run ``fold`` marked."""
    lines = [f"grouped {len(folds)}-fold cross-validation over {sum(len(f) for f in folds)} cases "
             "(identical images in one fold):"]
    for k, f in enumerate(folds):
        mark = "  <- validation of this run" if k == fold else ""
        lines.append(f"  fold {k}: {' '.join(f)}{mark}")
    return "\n".join(lines)
