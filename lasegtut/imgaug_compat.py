"""Make imgaug 0.4.0 import and run on NumPy 2.

imgaug is unmaintained (last release 2020). NumPy 2.0 removed ``np.sctypes``, which imgaug
reads at import time (``imgaug/dtypes.py``), so ``import imgaug`` fails with
``AttributeError: np.sctypes was removed``. This module restores that one attribute with the
same contents NumPy 1.x had, *before* imgaug is imported, and then imports imgaug.

Use ``from lasegtut.imgaug_compat import iaa, ia`` instead of importing imgaug directly.
On NumPy 1.x nothing is changed. The shim only adds a missing attribute; it never replaces
anything NumPy still has.
"""
from __future__ import annotations

import numpy as np

if not hasattr(np, "sctypes") or "sctypes" not in np.__dict__:  # NumPy >= 2.0
    np.sctypes = {  # type: ignore[attr-defined]
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }

import imgaug as ia  # noqa: E402
import imgaug.augmenters as iaa  # noqa: E402

__all__ = ["ia", "iaa"]
