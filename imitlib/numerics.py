"""Which floating-point kernels a build computes with (``run.numerics``).

The same code, params and seed give bit-identical models on one host, but not across hosts: torch
picks its vector kernels by the CPU's instruction set (AVX-512 or AVX2), and MKL, which does torch's
float32 matrix products on x86, picks its kernels by the CPU's vendor and model. Earlier confirm runs
rebuilt on another host moved single seeds' effects by up to 25 pts and changed verdicts.

``portable`` (the default) fixes both choices to ones every x86-64 CPU with AVX2 runs alike:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's AVX2 kernels, also on CPUs that have AVX-512;
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional-numerical-reproducibility branch for Intel and non-Intel
  CPUs (SSE2 without the approximate ``rcpps``/``rsqrtps``). ``MKL_CBWR=AVX2`` would be faster but is
  ignored on non-Intel CPUs (measured here: an AMD EPYC falls back to MKL's automatic branch).

Both are read once, when torch first computes on the CPU, so they are set in the environment before
torch is imported: :mod:`imitlib` does so when it is imported first (its ``__init__``), and
``python -m imitlib run`` before any stage. The torch thread count is the third part of a build
(``run.torch_threads``); it is not set here. ``native`` leaves torch and MKL to choose (faster; the
real tracks use it). :func:`require` checks, before a stage is built, that the process computes as
its config says, and :func:`state` is recorded in every stage's manifest with a :func:`fingerprint`:
the hash of a small fixed training computation, equal on two hosts exactly when their arithmetic is.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import sys
from typing import Any

PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}
MODE_ENV = "IMITLIB_NUMERICS"  # portable | native: what imitlib sets when it is imported before torch
MODES = ("portable", "native")
MKL_CBWR_BRANCH = 1  # mkl_cbwr_get(MKL_CBWR_BRANCH) returns the active branch
MKL_BRANCH_NAMES = {0: "OFF", 1: "BRANCH_OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 8: "SSE4_2", 10: "AVX2",
                    12: "AVX512", 14: "AVX512_E1"}
PORTABLE_STATE = {"aten_capability": "AVX2", "mkl_branch": "COMPATIBLE"}

_set_here: dict[str, str | None] = {}  # variables this module set, with their values before


class NumericsError(RuntimeError):
    """The process does not compute with the kernels ``run.numerics`` asks for."""


def pin_environment(mode: str | None = None) -> bool:
    """Set (``portable``) or restore (``native``) the kernel-choice variables, if torch is not loaded yet.

    Processes started later (notebook kernels, seed workers) inherit them. Once torch is loaded the
    environment is left alone: it then describes the kernels this process computes with, and the
    processes it starts compute the same way.

    Args:
        mode: ``portable`` or ``native``; ``None`` reads ``$IMITLIB_NUMERICS`` (default ``portable``).

    Returns:
        True when this process will compute with them, False when torch was already imported (its
        kernels are chosen; :func:`require` tells whether they are the right ones).
    """
    mode = mode or os.environ.get(MODE_ENV) or "portable"
    if mode not in MODES:
        raise NumericsError(f"${MODE_ENV} / run.numerics must be one of {', '.join(MODES)}, got {mode!r}")
    if "torch" in sys.modules:
        return False
    os.environ[MODE_ENV] = mode
    if mode == "portable":
        for name, value in PORTABLE_ENV.items():
            _set_here.setdefault(name, os.environ.get(name))
            os.environ[name] = value
    else:
        for name, before in list(_set_here.items()):
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
            del _set_here[name]
    return True


def _mkl_branch() -> str | None:
    """MKL's active CNR branch in this process (None where torch carries no MKL, e.g. not on x86)."""
    import torch

    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        getter = ctypes.CDLL(library).mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    getter.restype = ctypes.c_int
    branch = int(getter(ctypes.c_int(MKL_CBWR_BRANCH)))
    return MKL_BRANCH_NAMES.get(branch, str(branch))


def fingerprint() -> str:
    """sha256 (16 hex) of a small fixed float32 training computation on the CPU: three AdamW steps of a
    two-layer gated MLP with RMS normalisation and a softmax cross-entropy (the operations of the
    study's models, matrix products through MKL). Equal in two processes exactly when their kernels,
    and thread counts, compute alike on it."""
    import torch

    return _fingerprint(torch.get_num_threads())


@functools.lru_cache(maxsize=None)
def _fingerprint(threads: int) -> str:
    import torch

    generator = torch.Generator().manual_seed(20261205)
    hidden, inner, vocab, rows = 112, 336, 420, 96
    weights = [torch.randn(shape, generator=generator) * 0.1 for shape in
               [(vocab, hidden), (hidden, inner), (hidden, inner), (inner, hidden)]]
    for weight in weights:
        weight.requires_grad_(True)
    optimizer = torch.optim.AdamW(weights, lr=1e-2)
    tokens = torch.randint(0, vocab, (rows,), generator=generator)
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    for _ in range(3):
        x = weights[0][tokens]
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        x = x + (torch.nn.functional.silu(x @ weights[1]) * (x @ weights[2])) @ weights[3]
        loss = torch.nn.functional.cross_entropy(x @ weights[0].T, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tensor_digest(weights)


def tensor_digest(tensors) -> str:
    """sha256 (16 hex) of the tensors' bytes, in order: equal exactly when every value is bit-identical."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def state() -> dict[str, Any]:
    """How this process computes: the mode asked for, torch's kernel set, MKL's branch, torch threads
    and the :func:`fingerprint` (empty when torch is not imported: nothing is imported just for this)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    return {"mode": os.environ.get(MODE_ENV, "native"), "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_branch": _mkl_branch(), "torch_threads": torch.get_num_threads(), "fingerprint": fingerprint()}


def require(mode: str) -> None:
    """Check that this process computes as ``run.numerics`` = ``mode`` says, before a stage is built.

    Sets the environment first when torch is not loaded yet. ``native`` requires nothing.

    Raises:
        NumericsError: ``portable`` was asked for, but torch already chose other kernels (it was
            imported before imitlib), or this CPU cannot run them (no AVX2, no MKL).
    """
    pin_environment(mode)
    if mode == "native":
        return
    import torch

    found = {"aten_capability": torch.backends.cpu.get_cpu_capability(), "mkl_branch": _mkl_branch()}
    if found == PORTABLE_STATE:
        return
    machine = platform.machine()
    hint = (f"this {machine} CPU cannot run them; set run.numerics: native" if machine not in ("x86_64", "AMD64")
            or found["mkl_branch"] is None else
            "torch was imported before imitlib set them: import imitlib first (or export "
            + " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
            + "), restart the kernel or process, or set run.numerics: native")
    raise NumericsError(f"run.numerics is 'portable' (torch kernels AVX2, MKL branch COMPATIBLE) but this process "
                        f"computes with torch kernels {found['aten_capability']} and MKL branch "
                        f"{found['mkl_branch']}: {hint}")
