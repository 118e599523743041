"""The world's pretraining step on this CPU: float32 eager (what the study runs) against torch.compile and bf16.

Pretraining is the largest share of the default study's time (``benchmarks/profile_study.py``), and the
teacher's from-scratch pretraining is the longest single piece of the world stage. This measures one
pretraining step (``pretrain_batch_size`` rows of ``seq_len`` tokens, AdamW, forward + backward + step)
of each world model in one torch thread (what a seed worker gets when three share two cores), in
three ways:

- ``eager``: float32, no compilation: the study's own training;
- ``compile``: float32 under ``torch.compile`` (inductor);
- ``bf16``: float32 weights under bfloat16 autocast.

``first_step_s`` is the first step's time: for ``compile`` it includes compilation, which the study
would pay for every model it trains (three bases, the teacher, nine replay-only continuations per seed
in 01_world, fifteen finetuning runs per seed in 03_train).

Each way starts from the same weights and batches, so the loss after the measured steps shows whether
the way changes the numbers the world is built from (``loss_vs_eager``: relative difference). Neither
alternative is bit-identical to eager; adopting one would change every world, so it would be a new
world version, not a speed-up of this one.

Writes ``outputs/benchmarks/pretrain_step.json``.

Usage: python benchmarks/bench_pretrain_step.py [--run outputs/default] [--models base-m,teacher] [--steps 30]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import machine_facts, write  # noqa: E402

from imitlib.config import PROJECT_ROOT, load  # noqa: E402

WAYS = ("eager", "compile", "bf16")


def model_dir(run: Path, name: str) -> Path:
    """The first seed's folder of world model ``name`` in a finished run (clear error when there is none)."""
    found = sorted((run / "stages" / "01_world").glob(f"seed*/*/models/{name}/config.json"))
    if not found:
        raise SystemExit(f"no world model {name!r} under {run / 'stages' / '01_world'}: build the run first "
                         f"(python -m imitlib run params/default.yaml)")
    return found[0].parent


def time_way(model, way: str, batches: list[torch.Tensor], warmup: int) -> dict:
    """Train a copy of ``model`` on ``batches`` the given way; per-step times after ``warmup`` steps, final loss."""
    model = copy.deepcopy(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if way == "compile" else model
    times, warm, loss = [], [], None
    for i, batch in enumerate(batches):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=way == "bf16"):
            out = forward(input_ids=batch, labels=batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        (times if i >= warmup else warm).append(time.perf_counter() - started)
        loss = float(out.loss.detach())
    return {"ms_per_step": {"min": 1000 * min(times), "median": 1000 * statistics.median(times),
                            "max": 1000 * max(times)},
            "steps_timed": len(times), "final_loss": loss,
            # the untimed steps, the first of which includes torch.compile's compilation
            "first_step_s": warm[0] if warm else None, "warmup_s": sum(warm)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=PROJECT_ROOT / "outputs" / "default",
                        help="a finished run whose first seed's world models are measured")
    parser.add_argument("--models", default="base-m,teacher", help="comma-separated world model names")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per way")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a seed worker of the default study: 1)")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--results-dir", type=Path, default=None, help="where to write (default outputs/benchmarks)")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        raise SystemExit(f"--ways: unknown {unknown}; choose from {list(WAYS)}")

    from transformers import AutoModelForCausalLM

    settings = load([PROJECT_ROOT / "params" / "default.yaml"]).world
    torch.set_num_threads(args.threads)
    results = {}
    for name in [m for m in args.models.split(",") if m]:
        folder = model_dir(args.run, name)
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
        generator = torch.Generator().manual_seed(0)
        shape = (settings.pretrain_batch_size, settings.seq_len)
        batches = [torch.randint(0, model.config.vocab_size, shape, generator=generator)
                   for _ in range(args.warmup + args.steps)]
        rows = {}
        for way in ways:
            rows[way] = time_way(model, way, batches, args.warmup)
            print(f"{name} {way}: {rows[way]['ms_per_step']['median']:.1f} ms/step (median), "
                  f"loss {rows[way]['final_loss']:.5f}", flush=True)
        if "eager" in rows:
            eager = rows["eager"]
            for way, row in rows.items():
                row["speedup_vs_eager"] = eager["ms_per_step"]["median"] / row["ms_per_step"]["median"]
                row["loss_vs_eager"] = abs(row["final_loss"] - eager["final_loss"]) / abs(eager["final_loss"])
        results[name] = {"folder": str(folder.relative_to(PROJECT_ROOT) if folder.is_relative_to(PROJECT_ROOT) else folder),
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "hidden_size": model.config.hidden_size, "layers": model.config.num_hidden_layers,
                         "vocab_size": model.config.vocab_size, "rows_per_step": shape[0], "seq_len": shape[1],
                         "ways": rows}
    result = {"benchmark": "pretrain_step", "threads": args.threads, "warmup_steps": args.warmup,
              "models": results, "host": machine_facts(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    write("pretrain_step", result, args.results_dir)
    return result


if __name__ == "__main__":
    main()
