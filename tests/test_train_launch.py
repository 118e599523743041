"""A run killed (SIGKILL) after a checkpoint is resumed by `accelerate launch` of the module entry point
(configs/accelerate/cpu.yaml) and ends with the weights of an uninterrupted in-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from imitlib.config import PROJECT_ROOT
from imitlib.train import TrainArgs, latest_checkpoint, train_causal_lm
from imitlib.train.launch import launch, read_jsonl, write_jsonl
from test_train import chat_examples, make_model, make_tokenizer, tokenizer  # noqa: F401  (fixtures)

torch.set_num_threads(1)


def test_sigkill_then_accelerate_launch_resume(tmp_path, tokenizer, chat_examples):  # noqa: F811
    model_dir, run_dir = tmp_path / "base", tmp_path / "run"
    make_model(len(tokenizer), seed=5).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_jsonl(tmp_path / "examples.jsonl", [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in chat_examples])
    args = TrainArgs(lr=3e-3, epochs=4, batch_size=2, seq_len=64, warmup_steps=2, checkpoint_every=3, log_every=1,
                     seed=7, long_examples="split")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{Path(__file__).parent}"}

    killed_script = textwrap.dedent(f"""
        import json, os, signal, torch
        from transformers import AutoModelForCausalLM
        from imitlib.train import TrainArgs, train_causal_lm
        from imitlib.train.launch import read_jsonl
        torch.set_num_threads(1)
        def die(step):
            if step == 7:
                os.kill(os.getpid(), signal.SIGKILL)
        train_causal_lm(AutoModelForCausalLM.from_pretrained({str(model_dir)!r}), read_jsonl({str(tmp_path / 'examples.jsonl')!r}),
                        TrainArgs.from_dict(json.loads({json.dumps(json.dumps(args.to_dict()))})), output_dir={str(run_dir)!r},
                        progress=False, on_step=die)
    """)
    killed = subprocess.run([sys.executable, "-c", killed_script], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert latest_checkpoint(run_dir).name == "step-0000006"

    spec = {"model": str(model_dir), "examples": str(tmp_path / "examples.jsonl"), "args": args.to_dict(),
            "output_dir": str(run_dir), "save_to": str(tmp_path / "trained"), "progress": False}
    os.environ["OMP_NUM_THREADS"] = "1"
    summary = launch(spec, tmp_path / "spec.json", accelerate_config="cpu", timeout=240)
    assert summary["resumed_from_step"] == 6 and summary["num_processes"] == 1

    from transformers import AutoModelForCausalLM

    reference = train_causal_lm(AutoModelForCausalLM.from_pretrained(model_dir), read_jsonl(tmp_path / "examples.jsonl"),
                                args, progress=False)
    assert summary["steps"] == reference.steps
    resumed = AutoModelForCausalLM.from_pretrained(tmp_path / "trained")
    assert (tmp_path / "trained" / "tokenizer_config.json").exists()
    reference_state = reference.model.state_dict()
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, reference_state[name]), name
