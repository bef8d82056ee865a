"""lasegtut: left-atrium segmentation in 3D cardiac MRI, from voxels to millilitres.

The pipeline, one module per stage::

    data -> preprocess -> augment -> model -> training -> inference -> metrics -> volume

Array convention everywhere: volumes are numpy arrays brought to RAS orientation *as their
header states it*, indexed ``(x, y, z)``, with voxel spacing in millimetres ``(sx, sy, sz)``.
Code that slices names the array axis it cuts across: the files' own slices are across axis 2,
and a model records its ``slice_axis`` (the shipped one: axis 0). What those slices are
anatomically is taught in notebooks 01-02: the MSD Task02_Heart headers are plain diagonal
matrices, and the anatomy shows that axis 0 runs back to front, axis 1 feet to head and axis 2
left to right (:data:`lasegtut.orientation.MSD_HEART_AXCODES`), so the files' slices are sagittal and
the shipped model's coronal sections. Volumes and metrics do not depend on it.
"""
from .errors import LasegError

__version__ = "0.1.0"
__all__ = ["LasegError", "__version__"]
