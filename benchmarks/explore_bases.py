"""Design exploration of the world's bases: pretraining learning rate and budget against convergence.

Loads built worlds (tokenizer, tasks; the knowledge base rebuilt from its seed, in its built order) and pretrains fresh bases of the world's sizes
with other pretraining learning rates and token budgets, measures each one's loss on fresh corpus rows (the pretraining objective on unseen
documents), then runs the world's own convergence probe
(``imitlib.study.world._pretrain_until_converged``) on each. Nothing is written into the worlds.

    python benchmarks/explore_bases.py outputs/<run> --seeds 3 4 5 --lr 3e-3 1e-2 --tokens 800000

Writes ``<results-dir>/explore_bases.csv`` (one row per seed x base x lr x tokens). Design seeds only:
never point it at a confirmatory run's worlds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


HELDOUT_STREAM = 9  # a corpus stream no world build reads (0: pretraining, 2: teacher replay, 3+: probes)


def heldout_loss(model, rows, batch_size: int = 32) -> float:
    """Mean next-token loss on fresh corpus rows (the pretraining objective on unseen documents)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            ids = torch.tensor([r["input_ids"] for r in rows[start:start + batch_size]])
            loss = model(input_ids=ids, labels=ids).loss
            n = ids.shape[0] * (ids.shape[1] - 1)
            total, count = total + float(loss) * n, count + n
    return total / count


def load_built_world(run_dir: Path, settings, seed: int):
    """The knowledge base, tokenizer and qa task items of any complete world stage of ``seed`` in the run.

    The code that built the stage may be older than this checkout, so its cache key is not recomputed;
    the knowledge base is rebuilt from its seed, in its built order (the same pretraining stream as the
    world's build).
    """
    from transformers import AutoTokenizer

    from imitlib.study import world as W

    built = sorted(p.parent for p in (run_dir / "stages" / "01_world" / f"seed{seed}").glob("*/COMPLETE"))
    if not built:
        raise SystemExit(f"{run_dir}: no complete 01_world stage for seed {seed}")
    path = built[-1]
    tokenizer = AutoTokenizer.from_pretrained(str(path / "tokenizer"))
    qa = [json.loads(line) for line in (path / "tasks" / "qa.jsonl").read_text().splitlines()]
    return W.make_kb(settings, seed), tokenizer, qa


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a run folder (outputs/<name>) whose 01_world stages are built")
    ap.add_argument("--params", nargs="+", default=["params/default.yaml"], help="params files the worlds were built with")
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--bases", nargs="*", default=None, help="base names (default: every base of the world)")
    ap.add_argument("--lr", type=float, nargs="+", default=None, help="pretraining peak learning rates")
    ap.add_argument("--tokens", type=int, nargs="+", default=None, help="pretraining token budgets")
    ap.add_argument("--teacher", action="store_true", help="pretrain the teacher's size instead of the bases")
    ap.add_argument("--max-rounds", type=int, default=0, help="convergence extension rounds (world.convergence_max_rounds)")
    ap.add_argument("--heldout-tokens", type=int, default=51_200, help="fresh corpus tokens of the held-out loss")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    args = ap.parse_args(argv)

    import torch

    from imitlib.config import load
    from imitlib.study import world as W
    from imitlib.train.loop import train_causal_lm
    from imitlib.world import calibration as cal
    from imitlib.world.pretrain import make_model, pretrain_args, pretraining_examples

    settings = load(args.params, run_name=args.run_dir.name).world.model_copy(
        update={"convergence_max_rounds": args.max_rounds})
    rows = []
    for seed in args.seeds:
        kb, tokenizer, qa = load_built_world(args.run_dir, settings, seed)
        prompts, pool_prompts = W.recall_prompt_sets(qa, settings.recall_shots, seed, tokenizer.bos_token)
        sizes = [s for s in settings.base_models if args.bases is None or s.name in args.bases]
        if args.teacher:  # the teacher's size on its own (longer) pretraining stream
            sizes = [settings.teacher_model]
        default_tokens = settings.pretrain_tokens + (settings.teacher_extra_tokens if args.teacher else 0)
        for tokens in args.tokens or [default_tokens]:
            stream = pretraining_examples(W.make_sampler(kb, settings, stream_seed=0), tokenizer, tokens,
                                          settings.seq_len)
            heldout = pretraining_examples(W.make_sampler(kb, settings, stream_seed=HELDOUT_STREAM), tokenizer,
                                           args.heldout_tokens, settings.seq_len)
            for lr in args.lr or [settings.pretrain_lr]:
                for size in sizes:
                    clock = time.time()
                    model = make_model(size, tokenizer, seed)
                    model = train_causal_lm(model, stream, pretrain_args(settings, seed, lr=lr), progress=False).model
                    loss = heldout_loss(model, heldout)
                    _, recall, after, summary = W._pretrain_until_converged(
                        model, size.name, kb, settings, tokenizer, seed, prompts, pool_prompts, len(stream), {}, False)
                    last = summary["convergence_probes"][-1]
                    row = {"seed": seed, "base": size.name, "lr": lr, "tokens": tokens, "heldout_loss": round(loss, 4),
                           "rounds": summary["convergence_rounds"], "final_rows": summary["pretrain_rows"],
                           "recall": round(100 * cal.recall_share(recall), 2),
                           "first_recall": summary["convergence_probes"][0]["fewshot_recall"],
                           "first_pool_gain": summary["convergence_probes"][0]["pool_gain"],
                           "pool_gain": last["pool_gain"],
                           "evaluation_gain": round(sum(last["evaluation_gains"]) / len(last["evaluation_gains"]), 2),
                           "converged": last["converged"], "seconds": round(time.time() - clock, 1),
                           "torch_threads": torch.get_num_threads()}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / "explore_bases.csv"
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
