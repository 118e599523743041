"""Study parameters: a strict pydantic schema and a loader that deep-merges YAML files.

Every key lives once in ``params/base.yaml`` with a one-line comment; the other params files only
override. ``load(files, overrides)`` always reads ``params/base.yaml`` first, deep-merges the given
files and overrides in order, and validates the result. Any unknown key, wrong type or out-of-range
value raises :class:`ConfigError` naming the file that set it (and its line) and the key path. So does
an output root outside ``outputs/`` (see :func:`output_root_problem`) and an input file the run will
read (imitation import files, human ratings) that is missing or does not start in its format.
"""

from __future__ import annotations

import codecs
import copy
import csv
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

PROJECT_ROOT = Path(os.environ.get("IMITLIB_ROOT", Path(__file__).resolve().parent.parent))
BASE_PARAMS = PROJECT_ROOT / "params" / "base.yaml"


OUTPUTS_DIR = "outputs"
EXTERNAL_ROOTS_ENV = "IMITLIB_OUTPUT_ROOTS"


class ConfigError(ValueError):
    """A params file or override is invalid; the message names the file and the key path."""


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def output_root_problem(root: str, allow_external: bool = False) -> str | None:
    """Why ``run.output_root`` may not be used (None when it may).

    The rule: results go under the project's ``outputs/`` folder. A relative root is read from the
    project root and must stay inside ``outputs/`` (``outputs``, ``outputs/study``). An absolute root
    must lie inside ``<project>/outputs/`` too, unless ``run.allow_external_output_root`` is true or it
    lies inside one of the folders listed (``os.pathsep``-separated) in ``$IMITLIB_OUTPUT_ROOTS``.
    Paths are compared as written, after normalising ``..`` (no symlinks are followed).
    """
    if not root.strip():
        return "output_root is empty"
    outputs = os.path.normpath(PROJECT_ROOT / OUTPUTS_DIR)
    path = Path(root)
    if not path.is_absolute():
        resolved = os.path.normpath(PROJECT_ROOT / path)
        if not _inside(resolved, outputs):
            return (f"output_root {root!r} escapes the project's {OUTPUTS_DIR}/ folder (it resolves to {resolved}): "
                    f"a relative root must stay inside {OUTPUTS_DIR}/, e.g. '{OUTPUTS_DIR}/study'")
        return None
    resolved = os.path.normpath(path)
    if _inside(resolved, outputs) or allow_external:
        return None
    allowed = [os.path.normpath(p) for p in os.environ.get(EXTERNAL_ROOTS_ENV, "").split(os.pathsep)
               if p.strip() and Path(p).is_absolute()]
    if any(_inside(resolved, folder) for folder in allowed):
        return None
    return (f"output_root {root!r} is outside the project's {OUTPUTS_DIR}/ folder ({outputs}): set "
            f"run.allow_external_output_root: true to write there, or list a folder holding it in "
            f"${EXTERNAL_ROOTS_ENV}")


from imitlib.settings.analysis import AnalysisSettings  # noqa: E402
from imitlib.settings.base import Section  # noqa: E402
from imitlib.settings.evaluate import EvaluateSettings  # noqa: E402
from imitlib.settings.imitation import ImitationSettings  # noqa: E402
from imitlib.settings.train import TrainSettings  # noqa: E402
from imitlib.settings.world import WorldSettings  # noqa: E402


# --------------------------------------------------------------------------------------------
# run: where results go and how the study is replicated
# --------------------------------------------------------------------------------------------
class RunSettings(Section):
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    allow_external_output_root: bool = False  # declared before output_root: its validator reads it
    output_root: str = "outputs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(default=0, ge=0)
    numerics: Literal["portable", "native"] = "portable"
    seed_workers: int = Field(default=1, ge=1)
    force: bool = False
    progress: bool = True

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("output_root")
    @classmethod
    def _under_outputs(cls, root: str, info: ValidationInfo) -> str:
        problem = output_root_problem(root, bool(info.data.get("allow_external_output_root", False)))
        if problem:
            raise ValueError(problem)
        return root


class Config(Section):
    """The whole resolved configuration of one study run."""

    run: RunSettings = Field(default_factory=RunSettings)
    world: WorldSettings = Field(default_factory=WorldSettings)
    imitation: ImitationSettings = Field(default_factory=ImitationSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    # Filled by load(), not by params files.
    run_name: str = "default"
    params_files: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _name_ok(self) -> "Config":
        if not self.run_name or "/" in self.run_name or self.run_name.startswith("."):
            raise ValueError(f"run_name {self.run_name!r} must be a plain folder name")
        return self

    # ---- paths -----------------------------------------------------------------------------
    @property
    def output_root(self) -> Path:
        root = Path(self.run.output_root)
        return root if root.is_absolute() else PROJECT_ROOT / root

    @property
    def run_dir(self) -> Path:
        return self.output_root / self.run_name

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"

    @property
    def tables_dir(self) -> Path:
        return self.run_dir / "tables"

    def subset(self, *keys: str) -> dict[str, Any]:
        """The parts of the config named by dotted keys (``"world"``, ``"train.method"``)."""
        dumped = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for key in keys:
            node: Any = dumped
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise KeyError(f"config has no key {key!r}")
                node = node[part]
            out[key] = node
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    if p.exists():
        return p.resolve()
    return PROJECT_ROOT / p


def _deep_merge(into: dict, new: dict, origin: dict, source: str, prefix: tuple = ()) -> None:
    """Merge ``new`` into ``into`` in place, recording in ``origin`` which source set each key."""
    for key, value in new.items():
        path = prefix + (str(key),)
        if isinstance(value, dict) and value and isinstance(into.get(key), dict):  # {} replaces (empties)
            _deep_merge(into[key], value, origin, source, path)
            origin[path] = source  # an error about the mapping as a whole names the last file that set a key of it
        else:
            into[key] = copy.deepcopy(value)
            origin[path] = source
            if isinstance(value, dict):
                for sub in _walk_keys(value, path):
                    origin[sub] = source


def _walk_keys(tree: dict, prefix: tuple) -> list[tuple]:
    keys = []
    for key, value in tree.items():
        path = prefix + (str(key),)
        keys.append(path)
        if isinstance(value, dict):
            keys.extend(_walk_keys(value, path))
    return keys


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        line = path.read_bytes().count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``"train.lr=1e-3"`` into (["train", "lr"], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def overrides_from_cli(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", ...]`` (``--set`` arguments) as ``{"train.lr": 0.001, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        keys, value = parse_override(item)
        out[".".join(keys)] = value
    return out


def _nest(keys: list[str], value: Any) -> dict:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


def _normalise_overrides(overrides: dict | list | None) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        merged: dict = {}
        for key, value in overrides.items():
            nested = _nest(str(key).split("."), value) if "." in str(key) else {key: value}
            _deep_merge(merged, nested, {}, "overrides")
        return merged
    merged = {}
    for item in overrides:
        keys, value = parse_override(item)
        _deep_merge(merged, _nest(keys, value), {}, "overrides")
    return merged


def _line_of(path: Path, keys: tuple) -> int | None:
    """Best-effort line number of a key path in a YAML file (for error messages)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except Exception:
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.SequenceNode) and str(key).isdigit():
            if int(key) >= len(node.value):
                return line
            node = node.value[int(key)]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            return line
        for k, v in node.value:
            if k.value == key:
                found = (k, v)
                break
        else:
            return line
        node = found[1]
        line = found[0].start_mark.line + 1
    return line


def load(
    files: list[str | Path] | tuple = (),
    overrides: dict | list[str] | None = None,
    run_name: str | None = None,
    check_files: bool = True,
) -> Config:
    """Load and validate params.

    Args:
        files: params files merged in order after ``params/base.yaml`` (which is always first).
        overrides: dotted-key overrides, as a dict ``{"train.lr": 1e-3}`` or ``["train.lr=1e-3"]``.
        run_name: output folder name; defaults to the stem of the last params file.
        check_files: check that the input files the params name exist and start in their format
            (off only for planning a run whose data is not there yet).

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: naming the file (and line) and key path of the first problem found.
    """
    if isinstance(files, (str, Path)):
        files = [files]  # a single params file given as a plain string (e.g. papermill -p)
    paths = [_resolve(f) for f in files]
    if not paths or paths[0].resolve() != BASE_PARAMS.resolve():
        paths = [BASE_PARAMS] + [p for p in paths if p.resolve() != BASE_PARAMS.resolve()]
    merged: dict = {}
    origin: dict[tuple, str] = {}
    schema: dict = {}  # params/base.yaml as written: the known keys (its {} dicts take any keys)
    for path in paths:
        data = _read_yaml(path)
        if path.resolve() != BASE_PARAMS.resolve():
            _check_known_keys(data, schema, path)
        else:
            schema = copy.deepcopy(data)
        _deep_merge(merged, data, origin, str(path))
    extra = _normalise_overrides(overrides)
    _check_known_keys(extra, schema, "overrides")
    _deep_merge(merged, extra, origin, "overrides")
    for reserved in ("run_name", "params_files"):
        if reserved in merged:
            raise ConfigError(f"{origin.get((reserved,), '?')}: key {reserved!r} is set by load(), not by params")
    if run_name is None:
        run_name = Path(paths[-1]).stem if len(paths) > 1 else "base"
    merged["run_name"] = run_name
    merged["params_files"] = [str(p) for p in paths]
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    _check_benchmark_backend(cfg, origin)
    if check_files:
        _check_input_files(cfg, origin)
    return cfg


def _check_benchmark_backend(cfg: Config, origin: dict[tuple, str]) -> None:
    """lm-eval's vllm backend needs a GPU and, for LoRA students, a large enough ``max_lora_rank``
    (keys of two sections, so checked here); else ConfigError naming the file and line."""
    bench = cfg.evaluate.benchmarks
    if bench.vllm_args and bench.backend != "vllm":
        raise ConfigError(f"{_where(origin, ('evaluate', 'benchmarks', 'vllm_args'))}: evaluate.benchmarks.vllm_args "
                          f"are given but evaluate.benchmarks.backend is {bench.backend!r} (set it to vllm)")
    if bench.backend != "vllm":
        return
    loc = ("evaluate", "benchmarks", "backend")
    if cfg.run.device == "cpu":
        raise ConfigError(f"{_where(origin, loc)}: evaluate.benchmarks.backend: 'vllm' runs on GPUs only, but "
                          f"run.device is 'cpu' ({_where(origin, ('run', 'device'))}); use run.device auto or cuda "
                          "on a GPU machine, or backend hf")
    rank = bench.vllm_args.get("max_lora_rank", 16)  # lm-eval's VLLM default
    if cfg.train.method == "lora" and (not isinstance(rank, int) or cfg.train.lora_r > rank):
        raise ConfigError(f"{_where(origin, loc)}: evaluate.benchmarks.vllm_args.max_lora_rank ({rank!r}) must be an "
                          f"integer of at least train.lora_r ({cfg.train.lora_r}) for vllm to load the LoRA students")


def _check_known_keys(data: dict, base: dict, source: str | Path, prefix: tuple = ()) -> None:
    """Reject keys that params/base.yaml does not define (before pydantic, to name the file)."""
    if not base and not prefix:
        return
    for key, value in data.items():
        path = prefix + (str(key),)
        if not isinstance(base, dict) or key not in base:
            # Dict-valued free-form keys (e.g. model kwargs) are declared as {} in base.yaml.
            if isinstance(base, dict) and base == {} and prefix:
                continue
            line = _line_of(Path(source), path) if isinstance(source, Path) else None
            where = f"{source}" + (f":{line}" if line else "")
            raise ConfigError(f"{where}: unknown key {'.'.join(path)!r} (not in params/base.yaml)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            _check_known_keys(value, base[key], source, path)


def _where(origin: dict[tuple, str], loc: tuple) -> str:
    """``file:line`` (or ``overrides``) of the source that set the key path ``loc``."""
    source = None
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in origin:
            source = origin[loc[:cut]]
            break
    where = source or "params"
    if source and source != "overrides":
        line = _line_of(Path(source), loc)
        if line:
            where = f"{source}:{line}"
    return where


def _describe(exc: ValidationError, origin: dict[tuple, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        where = _where(origin, loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {'.'.join(loc)!r} (not in the schema of params/base.yaml)")
            continue
        given = err.get("input")
        if any("key" in part.lower() for part in loc):
            shown = "<not shown: may be a secret>"
        else:
            shown = repr(given)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
        lines.append(f"{where}: {'.'.join(loc) or '<root>'}: {err['msg']} (got {shown})")
    return "invalid params:\n  " + "\n  ".join(lines)


# --------------------------------------------------------------------------------------------
# input files named in params: checked at load time, before any stage runs
# --------------------------------------------------------------------------------------------
SNIFF_BYTES = 1 << 16
RATINGS_SUFFIXES = (".csv", ".jsonl", ".json")


def input_path(path: str) -> Path:
    """A params path of an input file: absolute, or relative to the project root (as the stages read it)."""
    return Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path


def _head(path: Path) -> tuple[str | None, str | None]:
    """(first bytes decoded, problem): the start of a file as text, or why it cannot be read."""
    if not path.exists():
        return None, "file not found"
    if not path.is_file():
        return None, "not a file"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SNIFF_BYTES)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)  # a cut character is fine
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return None, f"line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    if not text.strip():
        return None, "file is empty"
    return text.lstrip("\ufeff"), None


def _first_line(text: str) -> tuple[int, str]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            return number, line.strip()
    return 1, ""


def import_file_problem(path: Path) -> str | None:
    """Why an imitation import file cannot be read at all (None when it can): missing, not a file,
    unreadable, empty, or not UTF-8 in its first bytes. Whether its records match its format is
    checked record by record by ``imitlib check`` and the 02 stage (``imitlib.data.importers``)."""
    return _head(path)[1]


def ratings_file_problem(path: Path) -> str | None:
    """Why a human ratings file cannot be read (None when its start looks right)."""
    if path.suffix.lower() not in RATINGS_SUFFIXES:
        return f"unsupported ratings file type {path.suffix!r} (use .csv or .jsonl)"
    text, problem = _head(path)
    if problem:
        return problem
    number, line = _first_line(text)
    if path.suffix.lower() == ".csv":
        header = [h.strip() for h in next(csv.reader([line]))]
        missing = [c for c in ("model_id", "item_id") if c not in header]
        if missing:
            return f"line {number}: the CSV header lacks {', '.join(missing)}"
    elif not line.startswith("{"):
        return f"line {number}: expected one JSON object per line, but the file starts with {line[:20]!r}"
    return None


def _check_input_files(cfg: Config, origin: dict[tuple, str]) -> None:
    """Every input file the run will read exists and can be read (ratings: starts in its format); else
    ConfigError naming the params file and line, the key path and the file."""
    checks: list[tuple[tuple, Path, str | None]] = []
    if cfg.imitation.broad_source == "files":
        for i, item in enumerate(cfg.imitation.import_files):
            path = input_path(item.path)
            checks.append((("imitation", "import_files", str(i), "path"), path, import_file_problem(path)))
    for i, name in enumerate(cfg.evaluate.human_ratings):
        path = input_path(name)
        checks.append((("evaluate", "human_ratings", str(i)), path, ratings_file_problem(path)))
    lines = [f"{_where(origin, loc)}: {'.'.join(loc)}: {path}: {problem}" for loc, path, problem in checks if problem]
    if lines:
        raise ConfigError("invalid input files:\n  " + "\n  ".join(lines))


def describe_keys() -> list[tuple[str, str]]:
    """Every leaf key path of the schema with its type, for documentation and tests."""
    out: list[tuple[str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if model is Config and name in ("run_name", "params_files"):
                continue
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                out.append((f"{prefix}{name}", str(ann)))

    walk(Config, "")
    return out


def dumps(cfg: Config) -> str:
    return json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True)
