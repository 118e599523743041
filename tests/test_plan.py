"""``python -m imitlib plan``: the sweep's runs, compute and API calls computed from a params file."""

from __future__ import annotations

import pytest

import imitlib.config
from imitlib import plan
from imitlib.pipeline import main
from test_paper_paths import save_tiny_llama


def _paper(**overrides):
    # the paper's data files are not here: planning does not need them
    return imitlib.config.load(["params/paper.yaml"], overrides, check_files=False)


def test_paper_plan_counts_runs_compute_and_calls():
    cfg = _paper()
    made = plan.make_plan(cfg, gpus=8, gpu_tflops=312, mfu=0.4)
    # llama-13b: every broad budget and the task budgets NQ-synthetic can fill (6,000 answers × 1,024
    # tokens at most); gpt2-1.5b and llama-7b: the largest filled budget of each kind, and broad data
    # also at task data's largest (the kinds compared at equal budgets)
    task_cap = cfg.imitation.task_prompts * cfg.imitation.teacher.max_new_tokens
    broad = cfg.imitation.token_budgets
    task = [b for b in broad if b <= task_cap]
    assert len(made.runs) == 2 * 3 + len(broad) + len(task)
    assert {(r["base_model"], r["data_kind"], r["imitation_tokens"]) for r in made.runs} >= {
        ("gpt2-1.5b", "task", max(task)), ("gpt2-1.5b", "broad", max(task)), ("llama-7b", "broad", max(broad)),
        ("llama-13b", "broad", min(broad))}
    assert made.models["llama-7b"]["parameters"] == 7_000_000_000
    assert "name" in made.models["llama-7b"]["source"]
    run = next(r for r in made.runs if r["base_model"] == "llama-13b" and r["imitation_tokens"] == max(broad))
    assert run["flops"] == 6 * 13e9 * max(broad)  # full finetuning, 1 epoch, no replay
    assert made.train_flops == pytest.approx(sum(r["flops"] for r in made.runs))
    assert made.gpu_hours == pytest.approx(made.train_flops / (312e12 * 0.4) / 3600)
    assert made.teacher_requests["broad prompts"] == 0  # ShareGPT-Mix comes from files
    assert made.teacher_requests["NQ-synthetic answers"] == 6000
    held_out = {f: cfg.world.real.heldout_items[f] for f in ("qa", "open")}
    assert made.teacher_requests["held-out answers (2 each)"] == 2 * sum(held_out.values())
    rated_models = 3 + len(made.runs) + 1
    assert made.judge_requests == rated_models * sum(held_out.values()) * 2
    text = made.markdown()
    assert f"finetuning runs: {len(made.runs)}" in text and "cannot fill" in text


def test_parameters_come_from_config_json_when_the_model_is_on_disk(tmp_path):
    folder = save_tiny_llama(tmp_path / "tiny", hidden=16, seed=0)
    from transformers import AutoModelForCausalLM

    exact = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(folder).parameters())
    count, source = plan.parameter_count("tiny", str(folder), tmp_path / "cache")
    assert count == exact and "config.json" in source
    cfg = _paper(**{"world.real.students": {"tiny": str(folder)}, "train.method": "lora",
                    "train.curve_base_models": []})
    made = plan.make_plan(cfg)
    tiny_runs = [r for r in made.runs if r["base_model"] == "tiny"]  # the override adds to paper's students
    assert tiny_runs and all(r["flops"] == 4 * exact * r["trained_tokens"] for r in tiny_runs)  # LoRA: 4·N·D
    assert made.gpu_hours is None
    assert plan.parameter_count("mystery", "org/mystery", tmp_path / "cache")[0] is None


def test_plan_command_prints_the_plan(capsys):
    assert main(["plan", "params/real_small.yaml", "--set", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "| gemma-270m | 0.27 B |" in out
    assert "finetuning runs: 3" in out
    assert "| 1 | gemma-270m | broad | 4,000 | 8,000 |" in out  # two epochs
