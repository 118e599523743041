"""imitlib: a notebook-first, reproducible study of model imitation (style vs factuality)."""

__version__ = "0.1.0"
