"""Test-wide settings: offline hub, deterministic hashing, few threads."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("IMITLIB_OUTPUT_ROOTS", tempfile.gettempdir())  # tests write their runs to tmp folders
