"""How noisy is the world's convergence check?  Replicated replay-only continuations of built bases.

The world's calibration (``imitlib.study.world``) calls a base converged when one replay-only
continuation (``world.convergence_replay_tokens`` fresh corpus tokens at ``world.convergence_lr``)
adds at most 5 pts of few-shot recall on the 120 evaluation facts. This script measures how much of
that number is the continuation's own randomness: for every base of every built world seed it runs
``--replicates`` continuations that differ only in their fresh corpus stream and data order, and
reports per replicate the recall gain, the facts flipped each way, and the change in the gold
answer's mean log-likelihood (a smooth measure of the same knowledge).

    python benchmarks/convergence_noise.py outputs/<run> --params params/default.yaml [--replicates 4]

Writes ``<results-dir>/convergence_noise.csv`` (one row per seed x base x replicate) and prints the
spread of the gain per base. Design seeds only: never point it at a confirmatory run's worlds.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gold_loglik(model, tokenizer, prompts) -> list[float]:
    """Log-likelihood of each prompt's gold answer (its first word, with the leading space) after the prompt."""
    import torch

    out = []
    with torch.no_grad():
        for p in prompts:
            ctx = tokenizer(p["prompt"], add_special_tokens=False)["input_ids"]
            ans = tokenizer(" " + str(p["gold"]).split()[0], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + ans])
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            out.append(sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(ans)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a run folder (outputs/<name>) whose 01_world stages are built")
    ap.add_argument("--params", nargs="+", default=["params/default.yaml"], help="params files the worlds were built with")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="key=value overrides (as imitlib run)")
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="world seeds (default: the params' run.seeds)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imitlib.config import load
    from imitlib.study.world import load_world, make_sampler, recall_prompt_sets
    from imitlib.train.loop import train_causal_lm
    from imitlib.world import calibration as cal
    from imitlib.world.pretrain import pretrain_args, pretraining_examples

    cfg = load(args.params, overrides=args.overrides, run_name=args.run_dir.name)
    settings = cfg.world
    seeds = args.seeds if args.seeds is not None else list(cfg.run.seeds)
    rows = []
    for seed in seeds:
        world = load_world(cfg, seed)
        tokenizer = AutoTokenizer.from_pretrained(str(world.tokenizer_dir))
        tasks = {f: [json.loads(l) for l in (world.path / "tasks" / f"{f}.jsonl").read_text().splitlines()]
                 for f in ("qa",)}
        prompts, _ = recall_prompt_sets(tasks["qa"], settings.recall_shots, seed, tokenizer.bos_token)
        for name, folder in world.base_models.items():
            base = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
            before = cal.fewshot_recall(base, tokenizer, prompts)
            ll_before = gold_loglik(base, tokenizer, prompts)
            for rep in range(args.replicates):
                # replicate 0 is the calibration's own continuation (stream 3, train seed = world seed)
                stream = 3 if rep == 0 else 1000 + rep
                conv_rows = pretraining_examples(make_sampler(world.kb, settings, stream_seed=stream), tokenizer,
                                                 settings.convergence_replay_tokens, settings.seq_len)
                clock = time.time()
                model = train_causal_lm(copy.deepcopy(base), conv_rows,
                                        pretrain_args(settings, seed + 7919 * rep, lr=settings.convergence_lr),
                                        progress=False).model.eval()
                after = cal.fewshot_recall(model, tokenizer, prompts)
                ll_after = gold_loglik(model, tokenizer, prompts)
                up = sum((not b["correct"]) and a["correct"] for b, a in zip(before, after))
                down = sum(b["correct"] and not a["correct"] for b, a in zip(before, after))
                row = {"seed": seed, "base": name, "replicate": rep, "stream_seed": stream, "n": len(prompts),
                       "recall_before": round(100 * cal.recall_share(before), 2),
                       "recall_after": round(100 * cal.recall_share(after), 2),
                       "gain_pts": round(100 * (cal.recall_share(after) - cal.recall_share(before)), 2),
                       "flipped_up": up, "flipped_down": down,
                       "loglik_before": round(statistics.fmean(ll_before), 4),
                       "loglik_gain": round(statistics.fmean(ll_after) - statistics.fmean(ll_before), 4),
                       "seconds": round(time.time() - clock, 1), "torch_threads": torch.get_num_threads()}
                rows.append(row)
                print(json.dumps(row), flush=True)
                del model
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "convergence_noise.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"\nwrote {out}")
    print(f"{'seed':>5} {'base':>8} {'gains (pts)':>32} {'sd':>5} {'flips up/down (mean)':>22}")
    for seed in seeds:
        for name in dict.fromkeys(r["base"] for r in rows if r["seed"] == seed):
            rs = [r for r in rows if r["seed"] == seed and r["base"] == name]
            gains = [r["gain_pts"] for r in rs]
            sd = statistics.stdev(gains) if len(gains) > 1 else math.nan
            print(f"{seed:>5} {name:>8} {str(gains):>32} {sd:5.1f} "
                  f"{statistics.fmean(r['flipped_up'] for r in rs):9.1f} / {statistics.fmean(r['flipped_down'] for r in rs):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
