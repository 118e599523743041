"""Test-wide settings: offline hub, deterministic hashing, few threads."""

import getpass
import os
import tempfile
from pathlib import Path

import imitlib  # noqa: E402,F401  before any test module imports torch: the kernels of run.numerics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tests write their runs to pytest's tmp_path folders: allow exactly pytest's temp root as an output root
# (not the whole temp folder, which may hold the project itself, e.g. a checkout under /tmp).
os.environ.setdefault("IMITLIB_OUTPUT_ROOTS",
                      str(Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"))
