"""Image-quality, registration and timing metrics (import the sub-modules, e.g. :mod:`refsuite.metrics.registration`)."""
