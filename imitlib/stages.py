"""Cached stages: hashed folders, atomic writes, completion markers, manifests.

A stage's folder is ``<run_dir>/stages/<name>/<hash>/`` where the hash covers the stage name, the
config subset the stage reads, the digest of the code it runs (``imitlib.dag.code_digest``) and the
hashes of its upstream stages. Work is
written into ``<hash>.partial/``; the manifest and then the ``COMPLETE`` marker are written last and
the folder is renamed into place, so a folder without ``.partial`` is always complete. A partial
folder left by an interrupted run is cleared and redone, unless the stage opts to resume from it
(training keeps its checkpoints there).

Usage::

    stage = Stage(cfg, "world", reads=["world", "run.seeds"], upstream=[], code=digest)
    if not stage.done:
        with stage.build() as work:           # work: Path of the partial folder
            ...write files under work...
    files = stage.path                          # the completed folder
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from imitlib import numerics
from imitlib.config import PROJECT_ROOT, Config

COMPLETE_MARKER = "COMPLETE"
MANIFEST = "manifest.json"
TRACKED_PACKAGES = (
    "torch", "transformers", "tokenizers", "peft", "accelerate", "lm_eval", "datasets",
    "papermill", "numpy", "pandas", "seaborn", "openai", "imitlib",
)


def stage_hash(name: str, config_subset: dict[str, Any], upstream: list[str] | tuple = (), code: str = "") -> str:
    """sha256 of (stage, config subset, upstream hashes, code digest), first 10 hex digits."""
    payload = json.dumps(
        {"stage": name, "config": config_subset, "upstream": list(upstream), "code": code},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def cpu_info() -> dict[str, Any]:
    """The CPU model and its feature flags (the first processor of ``/proc/cpuinfo``, where there is one)."""
    model, flags = None, None
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = sorted(value.split())
    return {"model": model or platform.processor() or platform.machine(), "flags": flags or []}


def host_info() -> dict[str, Any]:
    """Where a stage was built: platform, cores, CPU model and flags, torch threads and the vector
    instruction set torch's CPU kernels use (``ATEN_CPU_CAPABILITY`` can lower it; results change)."""
    host: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_info()}
    torch = sys.modules.get("torch")  # never imported just for this
    if torch is not None:
        host["torch_threads"] = torch.get_num_threads()
        host["torch_interop_threads"] = torch.get_num_interop_threads()
        host["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        host["numerics"] = numerics.state()
    return host


def _drop(subset: dict[str, Any], dotted: str) -> None:
    """Remove a dotted key (``train.token_budgets``) from a config subset keyed by read keys."""
    for read, node in subset.items():
        if dotted == read:
            raise ValueError(f"cannot exclude {dotted!r}: it is a whole key the stage reads")
        if dotted.startswith(read + "."):
            parts = dotted[len(read) + 1:].split(".")
            for part in parts[:-1]:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(parts[-1], None)
            return
    raise KeyError(f"cannot exclude {dotted!r}: the stage does not read it")


TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".txt", ".md", ".csv", ".py", ".jinja", ".cfg")


def _repoint_text_files(partial: Path, final: Path) -> None:
    """Rewrite the temporary build folder's path to the completed folder's in the stage's text files
    (task configs, specs and summaries that name files of the stage stay valid after the rename)."""
    old, new = str(partial).encode(), str(final).encode()
    for file in sorted(partial.rglob("*")):
        if not file.is_file() or file.suffix not in TEXT_SUFFIXES:
            continue
        data = file.read_bytes()
        if old in data:
            atomic_write_bytes(file, data.replace(old, new))


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temporary name in the same folder, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _drop_unfinished_writes(folder: Path) -> None:
    """Delete the temporary files of atomic writes a killed process left in ``folder`` (kept work stays)."""
    for leftover in sorted(folder.rglob(".*.tmp-*")):
        if leftover.is_file():
            leftover.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write (by any library); rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (PNG unless the suffix says otherwise)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------
_BUILT_HERE: set[Path] = set()  # stage folders this process rebuilt under ``run.force`` (each is rebuilt once)


class StageError(RuntimeError):
    """A stage could not be built or its folder is inconsistent."""


class Stage:
    """One cached unit of work (a notebook's stage, or one run of a sweep)."""

    def __init__(
        self,
        cfg: Config,
        name: str,
        reads: list[str] | tuple = (),
        upstream: list["Stage | str"] | tuple = (),
        extra: dict[str, Any] | None = None,
        root: Path | None = None,
        seeds: list[int] | None = None,
        code: str = "",
        exclude: list[str] | tuple = (),
    ) -> None:
        """
        Args:
            cfg: the resolved config.
            name: stage name, e.g. ``"01_world"`` or ``"03_train/base-s-broad-4000-seed0"``.
            reads: dotted config keys this stage depends on (its cache key).
            upstream: upstream stages (or their hashes).
            extra: further key material that is not config (e.g. a sweep point).
            root: folder holding stage folders; defaults to ``<run_dir>/stages``.
            seeds: seeds recorded in the manifest.
            code: digest of the source the stage runs (``imitlib.dag.code_digest``).
            exclude: dotted keys left out of ``reads`` (e.g. ``train.token_budgets``: which runs exist,
                not how one run is built).
        """
        self.cfg = cfg
        self.name = name
        self.reads = list(reads)
        self.upstream = [u.hash if isinstance(u, Stage) else str(u) for u in upstream]
        subset = cfg.subset(*self.reads) if self.reads else {}
        for key in exclude:
            _drop(subset, key)
        if extra:
            subset = {**subset, "_extra": extra}
        self.config_subset = subset
        self.code = code
        self.hash = stage_hash(name, subset, self.upstream, code)
        self.root = Path(root) if root is not None else cfg.run_dir / "stages"
        self.path = self.root / name / self.hash
        self.partial = self.path.with_name(self.hash + ".partial")
        self.seeds = seeds if seeds is not None else list(cfg.run.seeds)

    # ---- state ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True when the completed folder exists, has its marker, and the run does not force."""
        return (not self.cfg.run.force or self.path in _BUILT_HERE) and (self.path / COMPLETE_MARKER).exists()

    def manifest(self) -> dict[str, Any]:
        if not (self.path / COMPLETE_MARKER).exists():
            raise StageError(f"stage {self.name} ({self.hash}) is not complete: {self.path}")
        return json.loads((self.path / MANIFEST).read_text())

    def file(self, relative: str) -> Path:
        """Path of a file of the completed stage; error if the stage is not complete."""
        if not (self.path / COMPLETE_MARKER).exists():
            raise StageError(f"stage {self.name} ({self.hash}) is not complete: {self.path}")
        target = self.path / relative
        if not target.exists():
            raise StageError(f"stage {self.name} has no file {relative!r} in {self.path}")
        return target

    # ---- building ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def build(self, resume: bool = False, info: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield the partial folder to write into; on success finalise it into the stage folder.

        Args:
            resume: keep an existing partial folder (e.g. training checkpoints) instead of clearing it.
            info: extra facts to put in the manifest (can also be added via ``self.info``).
        """
        self.info: dict[str, Any] = dict(info or {})
        if "run.numerics" in self.reads:  # a stage that computes with torch: with the kernels its key names
            numerics.require(self.cfg.run.numerics)
        if self.partial.exists() and not resume:
            shutil.rmtree(self.partial)
        elif self.partial.exists():
            _drop_unfinished_writes(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        started = time.time()
        yield self.partial
        finished = time.time()
        self._finalise(started, finished)

    def _finalise(self, started: float, finished: float) -> None:
        _repoint_text_files(self.partial, self.path)
        files = {}
        for file in sorted(self.partial.rglob("*")):
            if file.is_file() and file.name not in (MANIFEST, COMPLETE_MARKER):
                files[str(file.relative_to(self.partial))] = {
                    "sha256": sha256_file(file),
                    "bytes": file.stat().st_size,
                }
        manifest = {
            "stage": self.name,
            "hash": self.hash,
            "code": self.code,
            "run_name": self.cfg.run_name,
            "config_subset": self.config_subset,
            "config": self.cfg.model_dump(mode="json"),
            "upstream": self.upstream,
            "seeds": self.seeds,
            "packages": package_versions(),
            "git_sha": git_sha(),
            "host": host_info(),
            "timings": {"started": started, "finished": finished, "seconds": round(finished - started, 3)},
            "files": files,
            "info": getattr(self, "info", {}),
        }
        atomic_write_json(self.partial / MANIFEST, manifest)
        atomic_write_text(self.partial / COMPLETE_MARKER, f"{self.hash}\n")
        old = None
        if self.path.exists():
            old = self.path.with_name(self.hash + f".old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if self.cfg.run.force:
            _BUILT_HERE.add(self.path)

    def verify(self) -> list[str]:
        """Files whose checksum no longer matches the manifest (empty when intact)."""
        bad = []
        for rel, meta in self.manifest()["files"].items():
            target = self.path / rel
            if not target.exists() or sha256_file(target) != meta["sha256"]:
                bad.append(rel)
        return bad

    def __repr__(self) -> str:
        state = "done" if (self.path / COMPLETE_MARKER).exists() else "todo"
        return f"Stage({self.name!r}, hash={self.hash}, {state})"


def write_run_config(cfg: Config) -> Path:
    """Save the resolved config of a run beside its results."""
    return atomic_write_text(cfg.run_dir / "config.yaml", cfg.to_yaml())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
