"""lasegtut: left-atrium segmentation in 3D cardiac MRI, from voxels to millilitres.

The pipeline, one module per stage::

    data -> preprocess -> augment -> model -> training -> inference -> metrics -> volume

Array convention everywhere: volumes are numpy arrays in RAS orientation with axes
``(x, y, z)`` = (right, anterior, superior) and voxel spacing in millimetres
``(sx, sy, sz)``; 2D slices are taken along axis 2 (axial).
"""
from .errors import LasegError

__version__ = "0.1.0"
__all__ = ["LasegError", "__version__"]
