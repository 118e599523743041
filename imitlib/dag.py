"""The study as one DAG: every stage, the params it reads, its upstream stages and the code it runs.

This module is the one place that says "02 depends on 01". It holds no stage code: it names each
stage's module and computes the keys of the stages from the config alone, so finding a stage's
folder never loads or builds anything upstream. :mod:`imitlib.runner` runs the stages in this order
and hands each build its upstream results.

A stage's key covers

- the params it reads (``reads``), less the ``shape`` keys in the keys of its units (``shape``
  keys choose *which* units exist, e.g. which sweep runs, not how one unit is built);
- the keys of its upstream stages;
- the digest of the source it runs: its module and every imitlib module that module imports,
  transitively, function-local imports included, read from the syntax tree (:func:`code_digest`).
  The caching and config machinery (:data:`NOT_RESULT_CODE`) is left out: it decides where and
  whether a stage is built, and the values of the params reach the key through ``reads``.

So a change to the training loss changes the key of ``03_train`` (and, through the upstream keys,
of 04 and 05) and of ``01_world`` (the world's models are trained with the same loop), while a
change to :mod:`imitlib.plots` or to another stage's module changes no key.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from imitlib.config import Config
from imitlib.stages import Stage

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name

# Where and whether a stage is built, not what it holds (their params reach keys through ``reads``).
NOT_RESULT_CODE = ("imitlib.config", "imitlib.settings", "imitlib.stages", "imitlib.dag", "imitlib.parallel",
                   "imitlib.processes")


@dataclass(frozen=True)
class StageSpec:
    """One stage of the study.

    Attributes:
        name: folder and notebook name, e.g. ``"03_train"``.
        reads: dotted params keys in the key.
        upstream: stages whose results the build receives (their keys are in this stage's key).
        module: the module whose code builds the stage (its import closure is in the key).
        unit_module: the module that builds one unit of the stage (a sweep run, one model's answers);
            defaults to ``module``.
        shape: params keys that choose which units exist; they are in the stage's key but not in a unit's.
        unit_upstream: upstream stages whose keys are in every unit's key (the rest come per unit,
            e.g. the one sweep run a model's evaluation reads); defaults to ``upstream``.
        per_seed: one stage per seed (``<name>/seed<N>``); otherwise one for the run.
        real_reads: more params keys in the key when ``world.kind`` is ``real`` (the real world
            benchmarks its models before imitation with the evaluation's settings).
        real_modules: more modules whose import closure is in the key when ``world.kind`` is
            ``real``; the stage imports them by these names, so the miniature world's key never
            holds their code.
    """

    name: str
    reads: tuple[str, ...]
    upstream: tuple[str, ...]
    module: str
    unit_module: str | None = None
    shape: tuple[str, ...] = ()
    unit_upstream: tuple[str, ...] | None = None
    per_seed: bool = True
    real_reads: tuple[str, ...] = ()
    real_modules: tuple[str, ...] = ()

    def reads_for(self, cfg: Config) -> tuple[str, ...]:
        """The params keys of this stage's key under ``cfg``."""
        return self.reads + (self.real_reads if cfg.world.kind == "real" else ())

    def code_for(self, cfg: Config, package_dir: Path | None = None) -> str:
        """The code digest of this stage's key under ``cfg`` (its module, plus ``real_modules`` on real tracks)."""
        return stage_code_digest(self, cfg.world.kind == "real", package_dir or PACKAGE_DIR)


STAGES: tuple[StageSpec, ...] = (
    StageSpec("01_world", reads=("world", "run.device", "run.numerics"), upstream=(), module="imitlib.study.world",
              real_reads=("evaluate.batch_size", "evaluate.teacher_dtype", "evaluate.benchmarks"),
              real_modules=("imitlib.real.calibration",)),
    StageSpec("02_imitation_data", reads=("imitation", "run.device", "run.numerics"), upstream=("01_world",),
              module="imitlib.study.imitation_data",
              # real tracks: the teacher answers only the held-out prompts 04 answers in chat
              real_reads=("evaluate.rater_families", "evaluate.toxicity_family", "evaluate.max_prompts_per_family")),
    StageSpec("03_train", reads=("train", "run.device", "run.numerics"), upstream=("01_world", "02_imitation_data"),
              module="imitlib.study.train",
              shape=("train.base_models", "train.data_kinds", "train.token_budgets", "train.curve_base_models",
                     "train.curve_data_kinds", "train.replay_control")),
    StageSpec("04_evaluate", reads=("evaluate", "run.device", "run.numerics"), upstream=("01_world", "02_imitation_data", "03_train"),
              module="imitlib.study.evaluate", unit_module="imitlib.evaluate.answers",
              shape=("evaluate.raters", "evaluate.judge", "evaluate.human_ratings", "evaluate.human_sample"),
              unit_upstream=("01_world", "02_imitation_data")),
    StageSpec("05_analysis", reads=("analysis",), upstream=("04_evaluate",), module="imitlib.study.analysis",
              per_seed=False),
)
SPECS: dict[str, StageSpec] = {spec.name: spec for spec in STAGES}


def spec(name: str) -> StageSpec:
    """The declaration of a stage (error naming the known stages)."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(SPECS)}") from None


# ---------------------------------------------------------------------------------------------
# code: the import graph of imitlib, read from the source
# ---------------------------------------------------------------------------------------------
def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its ``__init__.py``)."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def imports_of(module: str, path: Path, files: dict[str, Path]) -> list[tuple[str, bool]]:
    """The package modules ``module`` imports: (module, inside a function) pairs, in source order.

    ``import a.b.c`` and ``from a.b import c`` are edges to the module ``a.b.c`` when it exists,
    else to the nearest enclosing module; relative imports are resolved.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(fn)}
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
        for target in targets:
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.append((target, id(node) in in_function))
    return sorted(set(found))


@functools.lru_cache(maxsize=None)
def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, tuple[str, ...]]:
    """module -> the package modules it imports (top-level and function-local)."""
    files = module_files(package_dir)
    return {module: tuple(sorted({target for target, _ in imports_of(module, path, files)}))
            for module, path in files.items()}


def _excluded(module: str) -> bool:
    return any(module == skip or module.startswith(skip + ".") for skip in NOT_RESULT_CODE)


def code_closure(module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``module`` and every package module it imports, transitively (sorted), less :data:`NOT_RESULT_CODE`."""
    graph = import_graph(package_dir)
    if module not in graph:
        raise KeyError(f"no module {module!r} in {package_dir}")
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen or _excluded(current):
            continue
        seen.add(current)
        todo.extend(graph[current])
    return sorted(seen)


def _data_files(module_path: Path) -> list[Path]:
    """Non-Python files a module's folder ships beside it (e.g. ``evaluate/tasks/*.yaml``)."""
    folder = module_path.parent
    return sorted(p for sub in folder.iterdir() if sub.is_dir() and not (sub / "__init__.py").exists()
                  and sub.name != "__pycache__" for p in sub.rglob("*") if p.is_file() and p.suffix != ".pyc")


@functools.lru_cache(maxsize=None)
def code_digest(module: str, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 of the source of :func:`code_closure` (and the data files beside those modules).

    Computed once per process: the code a process runs is the code it imported.
    """
    files = module_files(package_dir)
    digest = hashlib.sha256()
    paths: set[Path] = set()
    for name in code_closure(module, package_dir):
        paths.add(files[name])
        paths.update(_data_files(files[name]))
    for path in sorted(paths):
        digest.update(str(path.relative_to(package_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_code_digest(node: StageSpec, real: bool, package_dir: Path = PACKAGE_DIR) -> str:
    """:func:`code_digest` of a stage's module, combined with its ``real_modules``' on real tracks."""
    digest = code_digest(node.module, package_dir)
    if real and node.real_modules:
        parts = [digest, *(code_digest(m, package_dir) for m in node.real_modules)]
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return digest


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------
def stage_name(name: str, seed: int | None) -> str:
    return name if seed is None else f"{name}/seed{seed}"


def stage(cfg: Config, name: str, seed: int | None = None, given: dict[str, list[str]] | None = None) -> Stage:
    """The cached stage ``name`` of one seed (of the run for ``05_analysis``), with its exact key; builds nothing.

    Args:
        given: upstream stage name -> the keys (folder names) of the results handed to the build, one
            per seed, in place of the keys computed from ``cfg`` (the same for results built from this config).
    """
    node = spec(name)
    if node.per_seed and seed is None:
        raise ValueError(f"stage {name} is built per seed: give the seed")
    seed = seed if node.per_seed else None
    seeds = [seed] if seed is not None else list(cfg.run.seeds)
    upstream = []
    for up in node.upstream:
        if given and up in given:
            if len(given[up]) != len(seeds):
                raise ValueError(f"stage {name}: {len(given[up])} {up} results given for {len(seeds)} seeds")
            upstream.extend(map(str, given[up]))
        else:
            upstream.extend(stage(cfg, up, s).hash for s in seeds)
    return Stage(cfg, stage_name(name, seed), reads=node.reads_for(cfg), upstream=upstream, code=node.code_for(cfg),
                 extra={"seed": seed} if seed is not None else None, seeds=seeds)


def unit(cfg: Config, name: str, seed: int, label: str, extra: dict, upstream: list[str] | tuple = ()) -> Stage:
    """One unit of a stage (``03_train/seed0/base-s/broad/4000``): the stage's params less its ``shape``
    keys, the unit module's code, the stage's upstream keys plus ``upstream``, and ``extra``."""
    node = spec(name)
    shared = node.upstream if node.unit_upstream is None else node.unit_upstream
    base = [stage(cfg, up, seed).hash for up in shared]
    return Stage(cfg, f"{stage_name(name, seed)}/{label}", reads=node.reads_for(cfg), exclude=node.shape,
                 upstream=[*base, *map(str, upstream)], code=code_digest(node.unit_module or node.module),
                 extra={**extra, "seed": seed}, seeds=[seed])


def order() -> list[str]:
    """Stage names with every stage after its upstream stages (the declaration order, checked)."""
    seen: list[str] = []
    for node in STAGES:
        missing = [up for up in node.upstream if up not in seen]
        if missing:
            raise ValueError(f"stage {node.name} is declared before its upstream {missing}")
        seen.append(node.name)
    return seen
