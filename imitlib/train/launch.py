"""Run a training spec in this process or under ``accelerate launch`` (the same code either way).

A spec is a JSON file::

    {"model": "<HF model folder>", "examples": "<jsonl of {input_ids, labels}>",
     "replay": "<jsonl or null>", "args": {...TrainArgs...}, "output_dir": "<folder>",
     "save_to": "<folder for the trained model, or null>", "result": "<json path for the TrainResult>"}

``python -m imitlib.train --spec run.json`` runs it; ``accelerate launch --config_file
configs/accelerate/<name>.yaml -m imitlib.train --spec run.json`` runs it on every process of the
launch. :func:`launch` picks between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from imitlib.config import PROJECT_ROOT
from imitlib.stages import atomic_write_json, atomic_write_text
from imitlib.train.loop import TrainArgs, train_causal_lm

ACCELERATE_CONFIGS = PROJECT_ROOT / "configs" / "accelerate"
SPEC_KEYS = {"model", "examples", "replay", "args", "output_dir", "save_to", "result", "progress", "desc"}


def read_jsonl(path: str | Path) -> list[dict]:
    """Examples from a JSON-lines file; a bad line raises naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write examples as JSON lines (atomically)."""
    return atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def save_trained_model(accelerator, model, folder: str | Path, tokenizer=None) -> None:
    """Save full weights or a LoRA adapter HF-style (works under DDP, FSDP and DeepSpeed)."""
    folder = Path(folder)
    state_dict = accelerator.get_state_dict(model) if accelerator is not None else None
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    is_main = accelerator.is_main_process if accelerator is not None else True
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(str(folder), state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))


def run_spec(spec_path: str | Path) -> dict[str, Any]:
    """Load the model and data a spec names, train, save the model and the result summary."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec_path = Path(spec_path)
    spec = json.loads(spec_path.read_text())
    unknown = set(spec) - SPEC_KEYS
    if unknown or "model" not in spec or "examples" not in spec:
        raise ValueError(f"{spec_path}: spec needs 'model' and 'examples'; unknown keys {sorted(unknown)}")
    args = TrainArgs.from_dict(spec.get("args", {}))
    model = AutoModelForCausalLM.from_pretrained(spec["model"])
    examples = read_jsonl(spec["examples"])
    replay = read_jsonl(spec["replay"]) if spec.get("replay") else None
    result = train_causal_lm(model, examples, args, output_dir=spec.get("output_dir"), replay=replay,
                             progress=spec.get("progress", True), desc=spec.get("desc", "train"))
    state = PartialState()
    if spec.get("save_to"):
        from accelerate import Accelerator

        tokenizer = None
        if (Path(spec["model"]) / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        save_trained_model(Accelerator(), result.model, spec["save_to"], tokenizer)
    summary = result.summary()
    summary["num_processes"] = state.num_processes
    if spec.get("result") and state.is_main_process:
        atomic_write_json(spec["result"], summary)
    state.wait_for_everyone()
    return summary


def accelerate_config_path(name: str) -> Path:
    """``configs/accelerate/<name>.yaml`` (a path is accepted as is)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = ACCELERATE_CONFIGS / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))
        raise FileNotFoundError(f"accelerate config {name!r} not found in {ACCELERATE_CONFIGS}; known: {known}")
    return path


def launch(spec: dict[str, Any], spec_path: str | Path, accelerate_config: str | None = None,
           num_processes: int | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Write ``spec`` to ``spec_path`` and run it: in this process when ``accelerate_config`` is
    None, else in ``accelerate launch --config_file configs/accelerate/<name>.yaml``.

    Returns:
        The result summary (what ``run_spec`` wrote to ``spec["result"]``).
    """
    spec = {**spec, "result": spec.get("result") or str(Path(spec_path).with_suffix(".result.json"))}
    atomic_write_json(spec_path, spec)
    if accelerate_config is None:
        return run_spec(spec_path)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(accelerate_config_path(accelerate_config))]
    if num_processes is not None:
        command += ["--num_processes", str(num_processes)]
    command += ["-m", "imitlib.train", "--spec", str(spec_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"accelerate launch failed ({completed.returncode}): {' '.join(command)}\n"
                           f"{completed.stderr[-4000:]}")
    return json.loads(Path(spec["result"]).read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m imitlib.train", description="Run a training spec (JSON).")
    parser.add_argument("--spec", required=True, help="path of the spec JSON")
    options = parser.parse_args(argv)
    run_spec(options.spec)
