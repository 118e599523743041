"""What ``run.numerics`` costs, and the bits it gives on this host: the world's pretraining step under
four kernel choices.

Each choice runs in a fresh process (the kernels are fixed when torch first computes) with one torch
thread (a seed worker of the default study): a freshly initialised world model of each size trains
``--steps`` pretraining steps (``pretrain_batch_size`` rows of ``seq_len`` tokens, AdamW) on the same
random batches. Per choice and model it records the median ms per step, a hash of the trained weights
and :func:`imitlib.numerics.fingerprint`:

- ``native``: torch and MKL choose by CPU (worlds v2-v5);
- ``portable``: ``run.numerics: portable`` (torch AVX2 kernels, ``MKL_CBWR=COMPATIBLE``);
- ``torch_avx2``: native MKL, torch's AVX2 kernels (what a CPU without AVX-512 runs natively);
- ``mkl_compatible``: native torch kernels, MKL's COMPATIBLE branch.

The last two show which library a host difference reaches through. Rows are kept per CPU model in
``outputs/benchmarks/numerics_portability.csv``: run it on another host and compare the ``portable``
rows' hashes with this host's (equal hashes: the two hosts build the same worlds).

Usage: python benchmarks/numerics_portability.py [--steps 30] [--models base-xs,base-m,teacher]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHOICES = {
    "native": {"IMITLIB_NUMERICS": "native"},
    "portable": {"IMITLIB_NUMERICS": "portable"},
    "torch_avx2": {"IMITLIB_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx2"},
    "mkl_compatible": {"IMITLIB_NUMERICS": "native", "MKL_CBWR": "COMPATIBLE"},
}
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "IMITLIB_NUMERICS")
VOCAB = 420  # about the world tokenizer's size


def child(models: list[str], steps: int, warmup: int) -> list[dict]:
    """Train each model in this process; one row per model."""
    from imitlib import numerics  # before torch: pins the kernels $IMITLIB_NUMERICS names
    from imitlib.config import PROJECT_ROOT, load

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    world = load([PROJECT_ROOT / "params" / "default.yaml"]).world
    sizes = {size.name: size for size in [*world.base_models, world.teacher_model]}
    rows = []
    for name in models:
        size = sizes[name]
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=size.hidden_size, num_hidden_layers=size.layers,
                             num_attention_heads=size.heads, num_key_value_heads=size.heads,
                             intermediate_size=size.intermediate_size, max_position_embeddings=1024,
                             tie_word_embeddings=True, attn_implementation="sdpa")
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(1)
        times = []
        for step in range(warmup + steps):
            batch = torch.randint(0, VOCAB, (world.pretrain_batch_size, world.seq_len), generator=generator)
            started = time.perf_counter()
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= warmup:
                times.append(time.perf_counter() - started)
        state = numerics.state()
        rows.append({"model": name, "parameters": sum(p.numel() for p in model.parameters()),
                     "ms_per_step": round(1000 * statistics.median(times), 2), "steps": warmup + steps,
                     "final_loss": float(loss), "weights_sha256": numerics.tensor_digest(model.parameters()),
                     "aten_capability": state["aten_capability"], "mkl_branch": state["mkl_branch"],
                     "fingerprint": state["fingerprint"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--models", default="base-xs,base-m,teacher")
    parser.add_argument("--choices", default=",".join(CHOICES))
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds over the choices (timing only)")
    parser.add_argument("--out", type=Path, default=None, help="CSV (default outputs/benchmarks/numerics_portability.csv)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if args.child:
        print(json.dumps(child(models, args.steps, args.warmup)))
        return
    choices = [c for c in args.choices.split(",") if c]
    unknown = sorted(set(choices) - set(CHOICES))
    if unknown:
        raise SystemExit(f"--choices: unknown {unknown}; choose from {list(CHOICES)}")

    import pandas as pd

    sys.path.insert(0, str(Path(__file__).parent))
    from harness import machine_facts

    from imitlib.config import PROJECT_ROOT
    from imitlib.stages import atomic_path, cpu_info

    out = args.out or PROJECT_ROOT / "outputs" / "benchmarks" / "numerics_portability.csv"
    clean = {k: v for k, v in os.environ.items() if k not in KERNEL_VARIABLES}
    runs: dict[str, list[list[dict]]] = {c: [] for c in choices}
    for round_ in range(args.repeats):
        for choice in choices:
            done = subprocess.run([sys.executable, __file__, "--child", "--models", ",".join(models), "--steps",
                                   str(args.steps), "--warmup", str(args.warmup)],
                                  env={**clean, **CHOICES[choice]}, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{choice}: the measuring process failed:\n{done.stderr[-3000:]}")
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            runs[choice].append(rows)
            print(f"round {round_ + 1} {choice}: " + ", ".join(f"{r['model']} {r['ms_per_step']:.1f} ms/step "
                                                            f"{r['weights_sha256']}" for r in rows), flush=True)
    cpu = cpu_info()["model"]
    facts = machine_facts()
    table = []
    for choice, rounds in runs.items():
        for index, row in enumerate(rounds[0]):
            hashes = {r[index]["weights_sha256"] for r in rounds}
            table.append({"cpu": cpu, "cpus": facts.get("cpu_count"), "choice": choice, **row,
                          "ms_per_step": statistics.median(r[index]["ms_per_step"] for r in rounds),
                          "repeats": len(rounds), "repeat_identical": len(hashes) == 1})
    new = pd.DataFrame(table)
    native = new[new["choice"] == "native"].set_index("model")["ms_per_step"]
    new["time_vs_native"] = [round(r.ms_per_step / native.get(r.model, float("nan")), 3) for r in new.itertuples()]
    if out.exists():  # keep other hosts' rows
        old = pd.read_csv(out)
        new = pd.concat([old[old["cpu"] != cpu], new], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        new.to_csv(tmp, index=False)
    print(new[new["cpu"] == cpu][["choice", "model", "ms_per_step", "time_vs_native", "weights_sha256",
                                  "fingerprint", "repeat_identical"]].to_string(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
