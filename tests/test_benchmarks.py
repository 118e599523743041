"""The benchmark scripts' core functions run on a tiny model with one repeat and write valid JSON.

Timings are never asserted (a shared 2-core machine is too noisy); what is checked is that both
sides did the same work and that the result files hold what the README table is built from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bench_gpu  # noqa: E402
import bench_serving  # noqa: E402
import bench_study  # noqa: E402
import bench_training  # noqa: E402
from synthetic import synthetic_conversations, synthetic_model  # noqa: E402

from imitlib.train.loop import TrainArgs  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return synthetic_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=16, layers=1, heads=2,
                           intermediate_size=32)


def _rate_block(block: dict) -> None:
    assert len(block["all"]) == 1 and block["min"] == block["median"] == block["max"] > 0


def test_training_benchmark_trains_every_side_on_the_same_tokens(tiny_model, tmp_path):
    args = TrainArgs(lr=1e-3, epochs=1, batch_size=4, seq_len=64, warmup_steps=1, log_every=1)
    results = bench_training.benchmark(tiny_model, synthetic_conversations(24, user_words=(2, 6), answer_words=(3, 20)),
                                       args, repeats=1, results_dir=tmp_path, name="training")
    for key, file in (("padded", "training.json"), ("flattening", "training_vs_flattening.json")):
        saved = json.loads((tmp_path / file).read_text())
        assert saved["ratio_of_medians"] == pytest.approx(results[key]["ratio_of_medians"])
        _rate_block(saved["ours"])
        _rate_block(saved["baseline"])
        plan = saved["plan"]
        assert plan["supervised_tokens_ours"] == plan["supervised_tokens_trainer"] > 0
        assert 0 < plan["trainer_padding_share"] < 1 and 0 < plan["packed_row_fill"] <= 1
        losses = saved["losses"][key]
        # the same steps on the same conversations: the loss curves agree step by step (the flattening
        # side only because its examples are isolated: with leaking attention the losses would differ)
        assert len(losses["ours_logged"]) == len(losses["theirs_every_step"]) == plan["optimizer_steps"]
        assert losses["ours_logged"] == pytest.approx(losses["theirs_every_step"], rel=1e-3)
        assert losses["within_tolerance"] is True
        flops = saved["model_flops"]
        assert flops["matmul_peak_gflops"]["peak"] > 0 and 0 < flops["share_of_peak_median"]["ours"]
        assert saved["host"]["cpu_count"] >= 1 and "torch" in saved["packages"]


def test_training_benchmark_in_bf16_records_what_autocast_costs_in_loss(tiny_model, tmp_path):
    import torch

    args = TrainArgs(lr=1e-3, epochs=1, batch_size=4, seq_len=64, warmup_steps=1, log_every=1, bf16=True)
    bench_training.benchmark(tiny_model, synthetic_conversations(16, user_words=(2, 6), answer_words=(3, 20)),
                             args, repeats=1, results_dir=tmp_path, name="training_bf16", baselines=("flattening",))
    saved = json.loads((tmp_path / "training_bf16_vs_flattening.json").read_text())
    assert saved["model_flops"]["matmul_peak_gflops"]["dtype"] == "bfloat16"
    against = saved["bf16_vs_float32"]
    assert len(against["bf16_logged"]) == len(against["float32_logged"]) == saved["plan"]["optimizer_steps"]
    # autocast changes the numbers (bf16 matmuls) but not by much on the first steps
    assert against["bf16_logged"] != against["float32_logged"]
    assert against["bf16_logged"][0] == pytest.approx(against["float32_logged"][0], rel=0.02)
    assert "bf16 autocast on both sides" in saved["notes"]
    torch.set_num_threads(1)


def test_training_benchmark_names_the_world_models_it_knows():
    with pytest.raises(SystemExit, match="base-m.*teacher"):
        bench_training.world_shape("base-xl")
    # the teacher it benchmarks is the world's larger model
    assert bench_training.world_shape("teacher")["hidden_size"] > bench_training.world_shape("base-m")["hidden_size"]


def test_serving_benchmark_answers_every_prompt_on_both_sides(tiny_model, tmp_path):
    conversations = [c[:1] for c in synthetic_conversations(6, user_words=(2, 5))]
    bench_serving.benchmark(tiny_model, conversations, concurrency=3, batch_size=3, max_new_tokens=4, repeats=1,
                            results_dir=tmp_path, name="serving", in_thread=True)
    saved = json.loads((tmp_path / "serving.json").read_text())
    _rate_block(saved["ours"])
    _rate_block(saved["baseline"])
    assert saved["units"] == "answers/s" and saved["target_ratio"] == 0.8
    assert saved["agreement"]["of"] == 6 and 0 <= saved["agreement"]["identical_answers"] <= 6


def test_study_benchmark_records_time_notebooks_and_tree_memory(tmp_path):
    # a stand-in for `python -m imitlib run`: a child that holds ~200 MiB and an executed notebook
    case = bench_study.Case("probe", ("params/smoke.yaml",), "probe_run", "outputs/probe", True, 60.0, 8.0)
    notebooks = tmp_path / "outputs" / "probe" / "probe_run" / "notebooks"
    notebook = {"cells": [{"cell_type": "code", "metadata": {"papermill": {"duration": 1.5}}},
                          {"cell_type": "code", "metadata": {"papermill": {"duration": 0.25}}}],
                "metadata": {"papermill": {"duration": 2.0, "start_time": "a", "end_time": "b", "exception": None}}}
    script = tmp_path / "fake.py"
    script.write_text(
        "import json, os, pathlib, subprocess, sys, time\n"
        f"out = pathlib.Path({str(notebooks)!r}); out.mkdir(parents=True)\n"
        f"(out / '01_world.ipynb').write_text({json.dumps(json.dumps(notebook))})\n"
        "subprocess.run([sys.executable, '-c', 'b = bytearray(200 * 2**20); import time; time.sleep(1.5)'], check=True)\n")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    python.chmod(0o755)
    result = bench_study.measure(case, project_root=tmp_path, python=str(python), results_dir=tmp_path)
    saved = json.loads((tmp_path / "study_probe.json").read_text())
    assert saved["returncode"] == result["returncode"] == 0
    assert saved["notebooks"]["01_world"]["seconds"] == 2.0
    assert saved["notebooks"]["01_world"]["slowest_cells"][0] == {"cell": 0, "seconds": 1.5}
    assert saved["memory"]["peak_tree_rss_gib"] >= 0.19  # the child's 200 MiB were seen
    assert saved["wall_seconds"] >= 1.5
    assert "no stages/ folder" in saved["profile"]["error"]  # the stand-in built no stage to profile
    assert saved["command"].endswith("run params/smoke.yaml --run-name probe_run --set run.output_root=outputs/probe")
    assert bench_study.command_of(bench_study.CASES["smoke"], "py") == [
        "py", "-m", "imitlib", "run", "params/smoke.yaml", "--run-name", "bench_smoke",
        "--set", "run.output_root=outputs/bench_runs/smoke"]


def test_gpu_script_configs_are_the_real_tracks_models():
    """The GPU check builds the real track's student and teacher from their configs: the parameter
    counts are those of the packaged models (imitlib.models' conversion records)."""
    import torch
    from transformers import AutoModelForCausalLM

    for name, parameters in (("gemma3-270m", 268_098_176), ("qwen2.5-coder-1.5b-instruct", 1_777_088_000)):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(bench_gpu.load_config(name, tiny=False))
        assert sum(p.numel() for p in model.parameters()) == parameters, name


def test_gpu_script_runs_end_to_end_on_tiny_models(tmp_path):
    result = bench_gpu.main(["--tiny", "--out", str(tmp_path), "--repeats", "2"])
    saved = json.loads(next(tmp_path.glob("gpu_tiny_*.json")).read_text())
    assert saved == json.loads(json.dumps(result))
    train = saved["finetuning_gemma3_270m"]
    assert train["losses_finite"] and len(train["tokens_per_second"]["all"]) == 2
    assert 0 < train["mfu_of_measured_peak"]["median"]
    generation = saved["teacher_generation_qwen2_5_coder_1_5b"]["by_batch_size"]
    assert set(generation) == {"1", "8"} and all(v["new_tokens_per_second"]["min"] > 0 for v in generation.values())
    assert saved["real_track_end_to_end"]["measured"] is False


def test_gpu_script_says_when_there_is_no_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        bench_gpu.main(["--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # nothing written


def test_pretrain_step_benchmark_measures_each_way_from_the_same_start(tiny_model, tmp_path):
    import shutil

    import bench_pretrain_step
    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "stages" / "01_world" / "seed0" / "abc" / "models" / "base-m")
    result = bench_pretrain_step.main(["--run", str(run), "--models", "base-m", "--steps", "2", "--warmup", "1",
                                       "--ways", "eager,bf16", "--results-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "pretrain_step.json").read_text())
    assert saved["models"] == json.loads(json.dumps(result["models"]))
    ways = saved["models"]["base-m"]["ways"]
    assert ways["eager"]["steps_timed"] == ways["bf16"]["steps_timed"] == 2
    assert ways["eager"]["loss_vs_eager"] == 0 and ways["eager"]["speedup_vs_eager"] == 1
    # bf16 autocast changes the numbers: the final loss is close to float32's, not equal
    assert 0 < ways["bf16"]["loss_vs_eager"] < 0.05
    # the same way twice from the same weights and batches gives the same loss (the comparison is fair)
    model = __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_model)
    batches = [torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
               for _ in range(2)]
    first = bench_pretrain_step.time_way(model, "eager", batches, warmup=0)["final_loss"]
    assert bench_pretrain_step.time_way(model, "eager", batches, warmup=0)["final_loss"] == first
    torch.set_num_threads(1)


def test_pretrain_step_benchmark_names_the_missing_model_and_folder(tmp_path):
    import bench_pretrain_step

    with pytest.raises(SystemExit, match=r"no world model 'teacher' under .*01_world.*build the run first"):
        bench_pretrain_step.main(["--run", str(tmp_path), "--models", "teacher", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown"):
        bench_pretrain_step.main(["--run", str(tmp_path), "--ways", "eager,fp8", "--results-dir", str(tmp_path)])
