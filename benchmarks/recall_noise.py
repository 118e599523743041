"""How much of a base's few-shot recall is the world, and how much is the draw of one training run.

For each design seed and base size, pretrains ``--replicates`` fresh bases on the world's own
pretraining stream (the first ``--tokens`` tokens of stream 0, the bases' learning rates), each
replicate with its own initialisation and row order (replicate 0 uses the world seed, as the world
build does: its recall is the built base's recall before any convergence round). Nothing else
changes between replicates: the knowledge base, the corpus, the tokenizer and the recall prompts are
the world's. Each replicate is measured three ways on the evaluation's few-shot recall prompts
(``imitlib.world.calibration``, every fact of every individual):

- ``recall``: the world's own measure, the greedy first word equals the gold value;
- ``ranked_recall``: the gold value has the highest next-token probability among the attribute's
  values (the knowledge the base stores, whatever else it would rather say);
- ``format_errors``: the greedy first word is no value of the asked attribute at all.

and split by whether the individual's facts also appear as Q/A lines in pretraining
(``world.qa_individual_fraction``). The held-out loss is the pretraining objective on fresh corpus rows.
No convergence probe is run: these are the bases as pretrained.

    python benchmarks/recall_noise.py outputs/<run> --seeds 3 4 5 --replicates 3 --tokens 400000 800000

Only a world stage's tokenizer and tasks are read, and neither depends on pretraining, so a world
built with almost none serves. The committed results came from one built that way (5 min), then two
processes, one budget each, joined with ``--merge``:

    python -m imitlib run params/default.yaml --only 01_world --run-name noise_worlds --no-report \
        --set 'run.seeds=[3,4,5]' --set world.pretrain_tokens=2560 --set world.teacher_extra_tokens=1280 \
        --set world.convergence_replay_tokens=0 --set world.teacher_chat_epochs=0.2
    python benchmarks/recall_noise.py outputs/noise_worlds --seeds 3 4 5 --tokens 800000 --results-dir /tmp/a
    python benchmarks/recall_noise.py outputs/noise_worlds --seeds 3 4 5 --tokens 400000 --results-dir /tmp/b
    python benchmarks/recall_noise.py - --merge /tmp/a/recall_noise.csv /tmp/b/recall_noise.csv

Replicate 0 of seed 3's base-xs at 800k tokens gives 25.8% greedy recall, the built world's own base.

Writes ``<results-dir>/recall_noise.csv`` (one row per seed x base x tokens x replicate) and
``recall_noise_summary.csv`` (between-replicate and between-seed spread per base and budget).
Design seeds only: never point it at a confirmatory run's worlds.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from explore_bases import HELDOUT_STREAM, heldout_loss, load_built_world  # noqa: E402

REPLICATE_STRIDE = 7919  # replicate r > 0 trains with seed + r * stride (init and row order)


def ranked_records(model, tokenizer, prompts: list[dict], values: dict[str, list[str]],
                   batch_size: int = 128) -> list[dict]:
    """Per prompt: is the gold value the most probable next token among its attribute's values, and is
    the most probable token of the whole vocabulary any value of that attribute (every value is one
    token of the world's word-level tokenizer)."""
    import torch

    value_ids = {a: [tokenizer.convert_tokens_to_ids("\u0120" + v) for v in vs] for a, vs in values.items()}
    for attribute, ids in value_ids.items():
        if tokenizer.unk_token_id in ids:
            raise ValueError(f"attribute {attribute!r}: a value is not one token of the world's tokenizer")
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            encoded = [tokenizer(p["prompt"], add_special_tokens=False)["input_ids"] for p in chunk]
            width = max(len(e) for e in encoded)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, e in enumerate(encoded):  # right padding: the last real position is read
                ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            for i, (p, e) in enumerate(zip(chunk, encoded)):
                last = logits[i, len(e) - 1]
                candidates = value_ids[p["attribute"]]
                gold = candidates[values[p["attribute"]].index(p["gold"])]
                best = candidates[int(torch.argmax(last[candidates]))]
                out.append({"ranked_correct": best == gold, "top_is_value": int(torch.argmax(last)) in candidates})
    return out


def _share(records: list[dict], prompts: list[dict], key: str, qa_names: set[str],
           qa_individuals: bool | None = None) -> float:
    """Percent of ``records`` whose ``key`` holds, over every prompt or only those about individuals
    with (``True``) or without (``False``) Q/A lines in pretraining."""
    kept = [r for r, p in zip(records, prompts) if qa_individuals is None or (p["individual"] in qa_names) == qa_individuals]
    return round(100 * sum(bool(r[key]) for r in kept) / len(kept), 2) if kept else float("nan")


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per base and budget: the mean, the between-replicate SD (pooled within seeds) and the SD of the
    seed means, for each measure."""
    out = []
    for (base, tokens), group in rows.groupby(["base", "tokens"], sort=False):
        record = {"base": base, "tokens": tokens, "seeds": group["seed"].nunique(),
                  "replicates": int(group.groupby("seed").size().min())}
        for measure in ("recall", "ranked_recall", "format_errors", "recall_qa_individuals",
                        "recall_bio_only_individuals", "heldout_loss"):
            within = group.groupby("seed")[measure].var(ddof=1).mean() ** 0.5
            record[f"{measure}_mean"] = round(group[measure].mean(), 3)
            record[f"{measure}_sd_within_seed"] = round(within, 3)
            record[f"{measure}_sd_of_seed_means"] = round(group.groupby("seed")[measure].mean().std(ddof=1), 3)
        out.append(record)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a run folder (outputs/<name>) whose 01_world stages are built")
    ap.add_argument("--params", nargs="+", default=["params/default.yaml"], help="params files of the world")
    ap.add_argument("--seeds", type=int, nargs="+", help="design seeds whose worlds are built in run_dir")
    ap.add_argument("--bases", nargs="*", default=None, help="base names (default: every base of the world)")
    ap.add_argument("--teacher", action="store_true",
                    help="the teacher's size instead, pretrained as the world does (its longer stream, its learning rate; no chat tuning)")
    ap.add_argument("--replicates", type=int, default=3, help="training runs per seed, base and budget")
    ap.add_argument("--tokens", type=int, nargs="+", default=None, help="pretraining token budgets (default: the world's)")
    ap.add_argument("--heldout-tokens", type=int, default=51_200, help="fresh corpus tokens of the held-out loss")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads (1, as the study's seed workers: other counts change the float sums, and so the bases)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="instead of training: join these recall_noise.csv files (runs split over processes) and summarise")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "outputs" / "benchmarks")
    args = ap.parse_args(argv)
    if args.merge:
        return write(pd.concat([pd.read_csv(p) for p in args.merge], ignore_index=True), args.results_dir)
    if not args.seeds:
        ap.error("--seeds: which built worlds to use (or --merge to join earlier results)")
    if args.replicates < 2:
        ap.error("--replicates: at least 2 (a spread needs two runs)")

    import torch

    from imitlib.config import load
    from imitlib.study import world as W
    from imitlib.train.loop import train_causal_lm
    from imitlib.world import calibration as cal
    from imitlib.world.pretrain import make_model, pretrain_args, pretraining_examples

    torch.set_num_threads(args.torch_threads)
    settings = load(args.params, run_name=args.run_dir.name).world
    sizes = [s for s in settings.base_models if args.bases is None or s.name in args.bases]
    default_tokens, lrs = settings.pretrain_tokens, {s.name: s.pretrain_lr or settings.pretrain_lr for s in sizes}
    if args.teacher:
        sizes = [settings.teacher_model]
        default_tokens = settings.pretrain_tokens + settings.teacher_extra_tokens
        lrs = {settings.teacher_model.name: settings.teacher_pretrain_lr}
    if not sizes:
        ap.error(f"--bases: none of {args.bases} is a base of the world ({[s.name for s in settings.base_models]})")
    rows = []
    for seed in args.seeds:
        kb, tokenizer, qa = load_built_world(args.run_dir, settings, seed)
        prompts, _ = W.recall_prompt_sets(qa, settings.recall_shots, seed, tokenizer.bos_token)
        qa_names = set(kb.qa_names(settings.qa_individual_fraction))
        heldout = pretraining_examples(W.make_sampler(kb, settings, stream_seed=HELDOUT_STREAM), tokenizer,
                                       args.heldout_tokens, settings.seq_len)
        for tokens in args.tokens or [default_tokens]:
            stream = pretraining_examples(W.make_sampler(kb, settings, stream_seed=0), tokenizer, tokens, settings.seq_len)
            for size in sizes:
                for replicate in range(args.replicates):
                    run_seed = seed + REPLICATE_STRIDE * replicate
                    clock = time.time()
                    model = make_model(size, tokenizer, run_seed)
                    args_ = pretrain_args(settings, run_seed, lr=lrs[size.name])
                    model = train_causal_lm(model, stream, args_, progress=False).model
                    model.eval()
                    greedy = cal.fewshot_recall(model, tokenizer, prompts)
                    ranked = ranked_records(model, tokenizer, prompts, kb.values)

                    def share(records, key, qa_individuals=None):
                        return _share(records, prompts, key, qa_names, qa_individuals)

                    row = {"seed": seed, "base": size.name, "tokens": tokens, "replicate": replicate, "run_seed": run_seed,
                           "lr": lrs[size.name], "heldout_loss": round(heldout_loss(model, heldout), 4),
                           "recall": share(greedy, "correct"), "ranked_recall": share(ranked, "ranked_correct"),
                           "format_errors": round(100 - share(ranked, "top_is_value"), 2),
                           "recall_qa_individuals": share(greedy, "correct", True),
                           "recall_bio_only_individuals": share(greedy, "correct", False),
                           "ranked_recall_bio_only_individuals": share(ranked, "ranked_correct", False),
                           "seconds": round(time.time() - clock, 1), "torch_threads": torch.get_num_threads()}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return write(pd.DataFrame(rows), args.results_dir)


def write(table: pd.DataFrame, results_dir: Path) -> int:
    table = table.sort_values(["seed", "tokens", "base", "replicate"], kind="stable").reset_index(drop=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(results_dir / "recall_noise.csv", index=False)
    summarise(table).to_csv(results_dir / "recall_noise_summary.csv", index=False)
    print(f"wrote {results_dir / 'recall_noise.csv'} and recall_noise_summary.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
