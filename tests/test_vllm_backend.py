"""lm-eval's vllm backend as an option for the paper track's benchmarks (issue 19, item 4): checked
when params load (refused on CPU, naming file and line), built into lm-eval model_args, and refused
before lm-eval starts where no vllm package or GPU is there. Run only where a GPU is lent."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

from imitlib import pipeline
from imitlib.config import PROJECT_ROOT, ConfigError, load
from imitlib.evaluate.benchmarks import model_args_for, run_benchmarks
from imitlib.settings.evaluate import VLLM_ARGS_SET_BY_IMITLIB

PAPER = [PROJECT_ROOT / "params" / "paper.yaml", PROJECT_ROOT / "params" / "paper_vllm.yaml"]


def test_the_paper_track_accepts_vllm_with_model_args():
    cfg = load(PAPER, check_files=False)
    bench = cfg.evaluate.benchmarks
    assert bench.backend == "vllm" and cfg.run.device == "auto"
    assert bench.vllm_args == {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "dtype": "bfloat16",
                               "max_model_len": 2048}
    assert load(PAPER[:1], check_files=False).evaluate.benchmarks.backend == "hf"  # the default stays hf


def test_vllm_is_refused_on_cpu_naming_file_and_line(tmp_path, capsys):
    params = tmp_path / "cpu.yaml"
    params.write_text("run:\n  device: cpu\nevaluate:\n  benchmarks:\n    backend: vllm\n")
    with pytest.raises(ConfigError) as error:
        load([params])
    assert str(error.value) == (f"{params}:5: evaluate.benchmarks.backend: 'vllm' runs on GPUs only, but run.device "
                                f"is 'cpu' ({params}:2); use run.device auto or cuda on a GPU machine, or backend hf")
    assert pipeline.main(["check", *map(str, PAPER), "--set", "run.device=cpu"]) == 2
    assert "'vllm' runs on GPUs only" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    ({"evaluate.benchmarks.vllm_args": {"tensor_parallel_size": 2}},
     "evaluate.benchmarks.vllm_args are given but evaluate.benchmarks.backend is 'hf'"),
    ({"evaluate.benchmarks.backend": "vllm", "evaluate.benchmarks.vllm_args": {"pretrained": "gpt2", "seed": 3}},
     "vllm_args ['pretrained', 'seed'] are set by imitlib"),
    ({"evaluate.benchmarks.backend": "vllm", "train.method": "lora", "train.lora_r": 32},
     "max_lora_rank (16) must be an integer of at least train.lora_r (32)"),
    ({"evaluate.benchmarks.backend": "tgi"}, "evaluate.benchmarks.backend"),
], ids=["args-without-vllm", "args-set-by-imitlib", "lora-rank", "unknown-backend"])
def test_vllm_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError) as error:
        load([], overrides)
    assert message in str(error.value), str(error.value)
    fixed = {"evaluate.benchmarks.backend": "vllm", "train.method": "lora", "train.lora_r": 32,
             "evaluate.benchmarks.vllm_args": {"max_lora_rank": 32}}
    assert load([], fixed).evaluate.benchmarks.vllm_args == {"max_lora_rank": 32}


def test_the_arguments_imitlib_sets_are_lm_evals_vllm_arguments():
    """Read from lm-eval's source (importing it needs vllm): VLLM.__init__ takes what imitlib fills in."""
    spec = importlib.util.find_spec("lm_eval")
    source = Path(spec.submodule_search_locations[0]) / "models" / "vllm_causallms.py"
    tree = ast.parse(source.read_text())
    init = next(node for cls in tree.body if isinstance(cls, ast.ClassDef) and cls.name == "VLLM"
                for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    named = {a.arg for a in init.args.args + init.args.kwonlyargs}
    assert set(VLLM_ARGS_SET_BY_IMITLIB) - {"device"} <= named  # device: popped from **kwargs with a warning
    assert {"dtype", "tensor_parallel_size", "max_model_len", "max_lora_rank", "lora_local_path"} <= named
    assert "'device' in kwargs" in source.read_text().replace('"', "'")


def test_model_args_for_vllm(tmp_path):
    full = tmp_path / "llama-7b"
    full.mkdir()
    assert model_args_for(full) == f"pretrained={full},dtype=float32"
    assert model_args_for(full, backend="vllm") == f"pretrained={full},dtype=auto"
    assert model_args_for(full, backend="vllm", extra={"tensor_parallel_size": 2, "dtype": "bfloat16"}) == \
        f"pretrained={full},dtype=bfloat16,tensor_parallel_size=2"
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(full)}))
    assert model_args_for(adapter, backend="vllm") == \
        f"pretrained={full},lora_local_path={adapter},tokenizer={full},dtype=auto"
    assert model_args_for(adapter) == f"pretrained={full},peft={adapter},tokenizer={full},dtype=float32"
    with pytest.raises(ValueError, match="vllm backend only"):
        model_args_for(full, extra={"tensor_parallel_size": 2})


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_without_vllm_the_run_stops_before_lm_eval_starts(tmp_path):
    with pytest.raises(RuntimeError, match="needs the vllm package"):
        run_benchmarks(tmp_path / "model", {"nq_open": 3}, tmp_path / "out", backend="vllm")
    assert not (tmp_path / "out").exists()
