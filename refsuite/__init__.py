"""refsuite: analytic and simulation reference suite for PET and quantitative SPECT.

Sub-packages are imported on demand (``import refsuite.sensitivity``) so that the heavy
optional dependencies of one solver are never needed by another.
"""

__version__ = "0.1.0"
