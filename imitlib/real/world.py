"""The real tracks' ``01_world``: resolved pretrained LMs and task items, behind the world's interface.

Nothing is pretrained here. ``build_real_world(cfg, seed)`` resolves the teacher and every student
(packaged GGUF, local folder or hub id; see :func:`imitlib.models.resolve_model`), loads the task
items of ``world.real.sources`` and splits them, and writes into the stage ``01_world/seed<seed>``::

    tasks/<family>.jsonl    task items of both splits (docs/ARCHITECTURE.md; plus ``group``)
    ground_truth.json       empty entity lookup: the fact rater has nothing to check (see below)
    models/<student>/       config + the student tokenizer with the study's chat template
                            (imitlib.chat); weight files are symlinks into the resolved folder
    models/teacher/         only when the teacher's tokenizer has no chat template of its own
    world.json              model specs, resolved folders, parameter counts, item counts, timings

Splits: items share a ``group`` (a FanOutQA question and its single-hop sub-questions; any other
item is its own group); a group is held out with probability ``world.heldout_fraction`` (seeded),
so no imitation prompt is part of a held-out question. ``world.real.heldout_items`` and
``imitation_items`` cap each family and split after a seeded shuffle.

The fact-checking rater needs ``{entity: {attribute: value}}`` claims it can find in free text;
these items are questions with answer strings, not an entity table, so the lookup is left empty and
the rater returns no verdict (``pref_fact`` is NaN, and ``world.json`` says why). Answer
correctness of chat answers to ``qa`` items is still scored against the references.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitlib.config import PROJECT_ROOT, Config
from imitlib.real.data import SOURCES, jsonl_items
from imitlib.settings.world import DEFAULT_REAL_SOURCES, WorldSettings
from imitlib.stages import Stage, StageError, atomic_write_json, atomic_write_text, log
from imitlib.world.kb import SPLITS

REAL_FAMILIES = ("qa", "mc", "code", "open")
CHAT_FAMILIES = ("qa", "open")
TEACHER = "teacher"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
CALIBRATION = "calibration"
FACT_RATER_NOTE = ("not computable here: real-track items are questions with answer strings, not an "
                   "entity/attribute table whose claims can be found in free text; pref_fact is NaN")


@dataclass
class RealWorld:
    """A built real-track world of one seed (same interface as the miniature ``World``)."""

    seed: int
    path: Path
    settings: WorldSettings
    ground_truth: dict[str, Any]
    tokenizer_dir: Path
    base_models: "OrderedDict[str, Path]"
    base_params: dict[str, int]
    teacher_dir: Path | None
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "real"

    @property
    def families(self) -> tuple[str, ...]:
        """Task families this world has items of."""
        return tuple(f for f in REAL_FAMILIES if (self.path / "tasks" / f"{f}.jsonl").exists())

    @property
    def chat_families(self) -> tuple[str, ...]:
        """Families whose held-out prompts are answered in chat (``mc``, ``code``: benchmarks only)."""
        return tuple(f for f in CHAT_FAMILIES if f in self.families)

    @property
    def stage_hash(self) -> str:
        """The hash of the world's cached stage (downstream stages key on it)."""
        return self.path.name

    def tasks(self, family: str, split: str | None = None) -> list[dict[str, Any]]:
        """Task items of a family, optionally of one split; a family this world lacks has none."""
        if family not in REAL_FAMILIES and family not in ("bio", "compare", "skill", "provoke"):
            raise ValueError(f"unknown task family {family!r}; real tracks have {REAL_FAMILIES}")
        from imitlib.world.tasks import read_task_items

        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        path = self.path / "tasks" / f"{family}.jsonl"
        return read_task_items(path, split) if path.exists() else []

    def calibration_dir(self, entry: Any) -> Path | None:
        """The pre-imitation benchmarks of the teacher or a base (``calibration/<name>``), else None."""
        if getattr(entry, "role", None) not in ("base", TEACHER):
            return None
        folder = self.path / CALIBRATION / (TEACHER if entry.role == TEACHER else str(entry.base_model))
        return folder if folder.is_dir() else None

    def replay_documents(self, count: int, seed: int = 0) -> list[str]:
        """Real tracks have no pretraining corpus to replay."""
        raise ValueError("the real tracks have no pretraining corpus to replay: set train.replay_tokens: 0")


# ---------------------------------------------------------------------------------------------
# task items
# ---------------------------------------------------------------------------------------------
def _source_items(source: str, family: str) -> list[dict[str, Any]]:
    if source in SOURCES:
        items = SOURCES[source]()
    else:
        path = Path(source) if Path(source).is_absolute() else PROJECT_ROOT / source
        if path.suffix != ".jsonl":
            raise ValueError(f"world.real.sources.{family}: {source!r} is neither a known source "
                             f"{sorted(SOURCES)} nor a .jsonl file")
        items = jsonl_items(path, family)
    wrong = sorted({item["family"] for item in items} - {family})
    if wrong:
        raise ValueError(f"world.real.sources.{family}: source {source!r} gives {wrong} items, not {family!r}")
    return items


def split_items(items_by_family: dict[str, list[dict[str, Any]]], heldout_fraction: float, seed: int,
                heldout_caps: dict[str, int], imitation_caps: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Assign each item's group to a split (seeded), then cap each family and split after a shuffle.

    Returns:
        ``{family: items}`` with ``split`` set, imitation items first, each split in shuffled order.
    """
    out = {}
    for family, items in items_by_family.items():
        by_split: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
        for item in items:
            group = str(item.get("group") or item["id"])
            held = random.Random(f"split-{seed}-{group}").random() < heldout_fraction
            by_split["heldout" if held else "imitation"].append({**item, "group": group,
                                                                  "split": "heldout" if held else "imitation"})
        for split, caps in (("heldout", heldout_caps), ("imitation", imitation_caps)):
            random.Random(f"order-{seed}-{family}-{split}").shuffle(by_split[split])
            if family in caps:
                by_split[split] = by_split[split][: caps[family]]
        out[family] = by_split["imitation"] + by_split["heldout"]
    return out


def load_real_items(settings: WorldSettings, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every family's items of ``world.real.sources``, split and capped (family -> items)."""
    real = settings.real
    loaded = {family: _source_items(source, family) for family, source in (real.sources or DEFAULT_REAL_SOURCES).items()}
    return split_items(loaded, settings.heldout_fraction, seed, real.heldout_items, real.imitation_items)


# ---------------------------------------------------------------------------------------------
# model folders
# ---------------------------------------------------------------------------------------------
def model_cache_dir(settings: WorldSettings) -> Path:
    """Where GGUF-converted models live (``world.real.model_cache`` or the default cache)."""
    from imitlib.models import default_model_cache

    if settings.real.model_cache is None:
        return default_model_cache()
    path = Path(settings.real.model_cache).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def chat_model_folder(source: Path, target: Path) -> dict[str, Any]:
    """A model folder at ``target`` whose tokenizer carries the study's chat template.

    Weight files are symlinked from ``source`` (nothing large is copied); configs are copied; the
    tokenizer is saved with ``imitlib.chat.CHAT_TEMPLATE`` and, when it has no pad token, its unk
    (or eos) token as pad (labels are built explicitly, so padding never hides an eos from the loss).

    Returns:
        What was done (``linked`` files, ``pad_token`` set).
    """
    from transformers import AutoTokenizer

    from imitlib.chat import CHAT_TEMPLATE

    target.mkdir(parents=True, exist_ok=True)
    linked = []
    for file in sorted(source.iterdir()):
        if not file.is_file() or file.name in TOKENIZER_FILES or file.name in ("COMPLETE", "conversion.json"):
            continue
        if file.name.endswith(WEIGHT_SUFFIXES) or file.name.endswith(".index.json"):
            (target / file.name).symlink_to(file.resolve())
            linked.append(file.name)
        else:
            shutil.copy2(file, target / file.name)
    if not linked:
        raise StageError(f"{source}: no weight files (*.safetensors, *.bin) to link")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    pad_set = None
    if tokenizer.pad_token is None:
        pad_set = tokenizer.unk_token or tokenizer.eos_token
        tokenizer.pad_token = pad_set
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(target))
    return {"linked": linked, "pad_token_set": pad_set}


def parameter_count(folder: str | Path) -> int:
    """Parameters of the model in a folder, counted on the meta device (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _has_chat_template(folder: Path) -> bool:
    from transformers import AutoTokenizer

    return bool(getattr(AutoTokenizer.from_pretrained(str(folder)), "chat_template", None))


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
def build_real_world(cfg: Config, stage: Stage, seed: int) -> Stage:
    """Build (or reuse) one seed's real world into ``stage`` (``01_world/seed<seed>``)."""
    if stage.done:
        return stage
    with stage.build() as work:
        info = _build_into(work, cfg.world, seed, cfg.run.progress)
        if cfg.world.real.calibrate:  # its code is declared in imitlib.dag (real_modules), not imported here
            from importlib import import_module

            from imitlib.dag import spec

            calibration = import_module(spec("01_world").real_modules[0])
            info["calibration"] = calibration.calibrate(work, cfg, info, seed)
            atomic_write_json(work / "world.json", info)
        stage.info = info
    return stage


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows))


def _build_into(work: Path, settings: WorldSettings, seed: int, progress: bool) -> dict[str, Any]:
    from imitlib.models import resolve_model

    started = time.time()
    real = settings.real
    cache = model_cache_dir(settings)
    items = load_real_items(settings, seed)
    for family, rows in items.items():
        _write_jsonl(work / "tasks" / f"{family}.jsonl", rows)
    counts = {family: {split: sum(i["split"] == split for i in rows) for split in SPLITS}
              for family, rows in items.items()}
    log(f"[01_world seed {seed}] real task items: {counts}")
    atomic_write_json(work / "ground_truth.json", {"entities": {}, "values": {}, "fact_rater": FACT_RATER_NOTE})

    resolved: dict[str, str] = {}
    params: dict[str, int] = {}
    folders: dict[str, dict[str, Any]] = {}
    for name, spec in real.students.items():
        source = resolve_model(spec, cache, allow_download=real.allow_download, progress=progress)
        resolved[name] = str(source)
        folders[name] = chat_model_folder(source, work / "models" / name)
        params[name] = parameter_count(source)
        log(f"[01_world seed {seed}] student {name}: {spec} -> {source} ({params[name]:,} parameters)")
    teacher_dir = None
    if real.teacher is not None:
        source = resolve_model(real.teacher, cache, allow_download=real.allow_download, progress=progress)
        resolved[TEACHER] = str(source)
        params[TEACHER] = parameter_count(source)
        if _has_chat_template(source):
            teacher_dir = str(source)
        else:
            folders[TEACHER] = chat_model_folder(source, work / "models" / TEACHER)
            teacher_dir = f"models/{TEACHER}"
        log(f"[01_world seed {seed}] teacher: {real.teacher} -> {source} ({params[TEACHER]:,} parameters)")
    base_order = sorted(real.students, key=lambda name: params[name])
    info = {"kind": "real", "seed": seed, "base_order": base_order, "params": params,
            "specs": {**real.students, **({TEACHER: real.teacher} if real.teacher else {})},
            "resolved": resolved, "model_folders": folders, "teacher_dir": teacher_dir,
            "sources": real.sources or DEFAULT_REAL_SOURCES, "items": counts, "fact_rater": FACT_RATER_NOTE,
            "seconds": round(time.time() - started, 2)}
    atomic_write_json(work / "world.json", info)
    return info


def load_real_world(cfg: Config, stage: Stage, seed: int) -> RealWorld:
    """Read a built real world from its stage (error when it has not been built)."""
    if not (stage.path / "COMPLETE").exists():
        raise StageError(f"the real world of seed {seed} is not built ({stage.path}): run notebooks/01_world first "
                         f"(python -m imitlib run <params> --only 01_world)")
    path = stage.path
    info = json.loads((path / "world.json").read_text())
    base_models = OrderedDict((name, path / "models" / name) for name in info["base_order"])
    teacher = info.get("teacher_dir")
    teacher_dir = None if teacher is None else (Path(teacher) if Path(teacher).is_absolute() else path / teacher)
    return RealWorld(seed=seed, path=path, settings=cfg.world,
                     ground_truth=json.loads((path / "ground_truth.json").read_text()),
                     tokenizer_dir=base_models[info["base_order"][0]], base_models=base_models,
                     base_params={k: int(v) for k, v in info["params"].items() if k != TEACHER},
                     teacher_dir=teacher_dir, info=info)


def task_table(world: RealWorld, per_family: int = 2):
    """A few items of every family and split (for display)."""
    import pandas as pd

    rows = []
    for family in world.families:
        for split in SPLITS:
            for item in world.tasks(family, split)[:per_family]:
                rows.append({"family": family, "split": split, "id": item["id"],
                             "prompt": str(item["prompt"])[:200], "answer": str(item.get("answer"))[:80]})
    return pd.DataFrame(rows)


def item_count_table(worlds: list[RealWorld]):
    """Items per seed, family and split."""
    import pandas as pd

    return pd.DataFrame([{"seed": w.seed, "family": f, "split": s, "items": n}
                         for w in worlds for f, splits in w.info["items"].items() for s, n in splits.items()])


def model_table(worlds: list[RealWorld]):
    """Every resolved model per seed: role, spec, resolved folder, parameters."""
    import pandas as pd

    rows = []
    for w in worlds:
        for name, spec in w.info["specs"].items():
            rows.append({"seed": w.seed, "model": name, "role": TEACHER if name == TEACHER else "base", "spec": spec,
                         "resolved": w.info["resolved"].get(name), "parameters": w.info["params"].get(name)})
    return pd.DataFrame(rows)
