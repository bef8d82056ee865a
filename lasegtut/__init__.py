"""lasegtut: left-atrium segmentation in 3D cardiac MRI, from voxels to millilitres.

The pipeline, one module per stage::

    data -> preprocess -> augment -> model -> training -> inference -> metrics -> volume

Array convention everywhere: volumes are numpy arrays brought to RAS orientation *as their
header states it*, indexed ``(x, y, z)``, with voxel spacing in millimetres ``(sx, sy, sz)``;
the model's 2D slices are taken along array axis 2 (the header's "axial" axis). Caveat taught in
notebooks 01-02: the MSD Task02_Heart headers are plain diagonal matrices, and the anatomy shows
that axis 2 really runs left-right, so those slices are sagittal sections
(:data:`lasegtut.anatomy.MSD_HEART_AXCODES`). Volumes and metrics do not depend on it.
"""
from .errors import LasegError

__version__ = "0.1.0"
__all__ = ["LasegError", "__version__"]
