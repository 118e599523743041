"""imitlib: a notebook-first, reproducible study of model imitation (style vs factuality)."""

from imitlib import numerics as _numerics

__version__ = "0.1.0"

# Before torch is imported anywhere below imitlib: the kernels of run.numerics (default portable).
_numerics.pin_environment()
