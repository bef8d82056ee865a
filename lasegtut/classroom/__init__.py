"""The classroom: student copies, grading in confined kernels, and the teacher's check cells.

A room of its own beside the segmentation pipeline: it reads the course's notebooks but the
pipeline (``lasegtut.data`` ... ``lasegtut.volume``) never imports it.

- :mod:`~lasegtut.classroom.assignments`: student copies with the solutions removed,
- :mod:`~lasegtut.classroom.exercises`: the teacher's exercises and check cells, nbgrader metadata,
- :mod:`~lasegtut.classroom.grading`: ``lasegtut assignments grade``,
- :mod:`~lasegtut.classroom.kernel_run`: run a submission's cells in its own kernel,
- :mod:`~lasegtut.classroom.sandbox`: the limits and confinement of that kernel.
"""
