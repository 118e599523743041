"""The ``02_imitation_data`` stage: prompts → teacher (through its API) → nested imitation budgets.

Files of the stage folder:

- ``conversations/``: a ``datasets`` dataset (``save_to_disk``), columns ``id``, ``kind``
  (``broad`` | ``task``), ``family``, ``messages``, ``tokens`` (student tokens of the whole
  conversation), ``budgets`` (the budgets of its kind that contain it), plus ``item_id``,
  ``reference`` (ground truth, never shown to the teacher), ``origin`` and ``source``;
- ``suites/broad.jsonl``, ``suites/task.jsonl``: the prompt suites with their ground truth;
- ``teacher_eval.jsonl``: the held-out evaluation prompts (real tracks: only those 04 answers in
  chat, where teacher generation is the cost) with the teacher's greedy answer
  (``teacher_answer``) and a second, sampled one (``teacher_answer_2``);
- ``exposure.parquet``: every evaluation fact's exposure in every (kind, budget) subset: how many of
  the subset's conversations have the teacher state it (:mod:`imitlib.data.exposure`);
- ``summary.json``: tokens per budget, task mix, diversity, the prompt pool, the NQ-synthetic valid
  share and the task suite's fallback share, exposure-stratum counts per subset.

Broad prompts are drawn from the world's prompt pool the way users ask (every individual, weighted
by popularity; families never evaluated included; never an evaluation prompt's text):
:func:`imitlib.data.suites.natural_sample`.

Teacher answers go through a response cache under ``<run_dir>/cache/teacher/<world hash>/``,
which outlives the stage folder, so an interrupted or re-parametrised build never sends an
answered prompt again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitlib import dag
from imitlib.config import PROJECT_ROOT, Config
from imitlib.data.budgets import conversation_tokens, nested_budgets
from imitlib.data.diversity import nearest_neighbour_bleu
from imitlib.data.cleaning import clean_import_files, split_into_blocks
from imitlib.data.exposure import FACT_FAMILIES, attach_exposure, evaluation_facts, exposure_table, stratum_counts
from imitlib.data.suites import (broad_suite, chat_items, code_task_suite, eval_suite, families_of, generation_requests, imitation_pool,
                                 individuals_of, popularity_of, seed_pairs, task_suite, without_evaluation_prompts)
from imitlib.stages import Stage, atomic_path, atomic_write_json, atomic_write_text, log

STAGE_PREFIX = "02_imitation_data"
KINDS = ("broad", "task")


def _world_hash(world: Any) -> str:
    for attribute in ("stage", "world_stage"):
        stage = getattr(world, attribute, None)
        if stage is not None and hasattr(stage, "hash"):
            return str(stage.hash)
    if getattr(world, "stage_hash", None):
        return str(world.stage_hash)
    if getattr(world, "path", None) is not None:
        return Path(world.path).name  # a stage folder is named by its hash
    raise AttributeError(f"{type(world).__name__} has no stage (or stage_hash) to key the imitation data on")


def imitation_stage(cfg: Config, seed: int) -> Stage:
    """The cached stage ``02_imitation_data/seed{seed}``, keyed by :mod:`imitlib.dag` (``imitation`` params,
    the world's key, the code); builds nothing."""
    return dag.stage(cfg, STAGE_PREFIX, seed)


def teacher_cache_dir(cfg: Config, world_hash: str) -> Path:
    """Where the teacher's answers for one world are cached (survives stage rebuilds)."""
    return cfg.run_dir / "cache" / "teacher" / world_hash


@dataclass
class ImitationData:
    """A completed imitation-data stage."""

    path: Path
    conversations: Any  # datasets.Dataset
    summary: dict[str, Any]

    def subset(self, kind: str, budget: int):
        """The conversations of one kind inside one token budget (error if the budget was not filled)."""
        info = self.summary["budgets"].get(kind, {}).get(str(budget))
        if info is None:
            raise KeyError(f"no {kind!r} budget {budget} in {self.path}; budgets: {self.summary['budgets']}")
        if not info["filled"]:
            raise ValueError(f"{kind} budget {budget} was not filled: only {self.summary['kinds'][kind]['tokens']} "
                             f"tokens of {kind} data (raise the prompt counts or lower imitation.token_budgets)")
        return self.conversations.filter(lambda row: row["kind"] == kind and budget in row["budgets"],
                                         keep_in_memory=True)  # never write cache files into a completed stage

    def filled_budgets(self, kind: str) -> list[int]:
        return sorted(int(b) for b, info in self.summary["budgets"].get(kind, {}).items() if info["filled"])

    def table(self):
        """One row per conversation (without the messages): id, kind, family, tokens, budgets, origin."""
        columns = [c for c in self.conversations.column_names if c != "messages"]
        return self.conversations.select_columns(columns).to_pandas()

    def samples(self, kind: str, count: int = 3, seed: int = 0) -> list[dict[str, Any]]:
        """A few conversations of one kind, as message lists."""
        rows = self.conversations.filter(lambda row: row["kind"] == kind, keep_in_memory=True)
        rows = rows.shuffle(seed=seed).select(range(min(count, len(rows))))
        return [{"id": r["id"], "family": r["family"], "messages": r["messages"]} for r in rows]

    def exposure(self):
        """Exposure of every evaluation fact in every (kind, budget) subset (``exposure.parquet``):
        ``kind``, ``budget``, ``item_id``, ``family``, ``individual``, ``attribute``, ``answer``,
        ``exposure`` (conversations of the subset stating the fact), ``exposure_stratum``."""
        import pandas as pd

        return pd.read_parquet(self.path / "exposure.parquet")

    def with_exposure(self, samples):
        """``samples`` (the evaluation's per-sample table) with ``exposure`` (nullable int) and
        ``exposure_stratum`` (``"0"`` | ``"1-2"`` | ``">=3"``) on imitation models' factual rows, None
        elsewhere (base, teacher, replay-only controls): :func:`imitlib.data.exposure.attach_exposure`."""
        return attach_exposure(samples, self.exposure())

    def cleaning_report(self) -> dict[str, Any] | None:
        """What cleaning did to the imported files (``cleaning_report.json``; None for world prompts):
        per-file counts, ``counts`` per reason, every skipped record and removed conversation with its
        file and line (:class:`imitlib.data.cleaning.CleaningReport`)."""
        path = self.path / "cleaning_report.json"
        return json.loads(path.read_text()) if path.exists() else None

    def teacher_eval(self):
        """The held-out prompts with ``teacher_answer`` and ``teacher_answer_2`` (a DataFrame)."""
        import pandas as pd

        return pd.read_json(self.path / "teacher_eval.jsonl", lines=True)


def load_imitation_data(cfg: Config, seed: int) -> ImitationData:
    """Open the completed stage (error if it has not been built)."""
    from datasets import load_from_disk

    stage = imitation_stage(cfg, seed)
    summary = json.loads(stage.file("summary.json").read_text())
    return ImitationData(path=stage.path, conversations=load_from_disk(str(stage.file("conversations"))),
                         summary=summary)


def _project_path(path: str) -> Path:
    """A params path: absolute, or relative to the project root (not to the notebook's folder)."""
    return Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def build_imitation_data(cfg: Config, seed: int, world: Any) -> ImitationData:
    """Build (or reuse) the imitation data of one seed.

    Args:
        cfg: the resolved config (reads ``imitation`` and ``run``).
        seed: replicate seed (the world of this seed; the order of prompts and budgets).
        world: an object with ``teacher_dir``, ``tokenizer_dir``, ``tasks(family, split)`` and its
            ``stage_hash`` (it keys the teacher's response cache), handed in by :mod:`imitlib.runner`.
    """
    stage = imitation_stage(cfg, seed)
    if not cfg.run.progress:
        import datasets

        datasets.disable_progress_bars()
    if stage.done:
        return load_imitation_data(cfg, seed)
    from imitlib.models import load_tokenizer
    from imitlib.teacher import collect, open_teacher, sampling_from
    from imitlib.teacher.cache import Sampling

    settings = cfg.imitation
    progress = cfg.run.progress
    world_hash = _world_hash(world)
    cache_dir = teacher_cache_dir(cfg, world_hash)

    timings: dict[str, float] = {}  # seconds per kind of work, in the manifest's info (benchmarks/profile_study.py)

    def ask(teacher, prompts: list[str], sampling: Sampling, what: str) -> list[str]:
        log(f"02_imitation_data/seed{seed}: {what}: {len(prompts)} prompts")
        started = time.perf_counter()
        answers = collect([[{"role": "user", "content": p}] for p in prompts], teacher, cache_dir, sampling,
                          progress=progress)
        key = f"teacher generation: {what}"
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - started, 3)
        return answers

    with stage.build() as work:
        opening = time.perf_counter()
        with open_teacher(settings.teacher, model_dir=getattr(world, "teacher_dir", None),
                          device=cfg.run.device) as teacher:
            timings["teacher start"] = round(time.perf_counter() - opening, 3)
            # the prompts users ask (every individual, never an evaluation prompt), with popularity
            pool, eval_prompts_dropped = without_evaluation_prompts(imitation_pool(world), world)
            popularity = popularity_of(world)
            # task-specific suite, the paper's way: the teacher proposes questions from seed pairs
            pairs = seed_pairs(world, settings.task_seed_pairs, seed, pool=pool)
            requests = generation_requests(pairs, settings.task_generation_requests, settings.task_pairs_shown, seed)
            generation_sampling = sampling_from(settings.teacher, temperature=settings.task_generation_temperature,
                                                seed=seed, max_new_tokens=max(settings.teacher.max_new_tokens, 128))
            generated = ask(teacher, requests, generation_sampling, "task question generation") if requests else []
            task_entries, task_stats = task_suite(world, generated, pairs, settings.task_prompts, seed, pool=pool)
            if "code" in settings.task_families:  # the teacher's solutions to the imitation split's problems
                code_entries = code_task_suite(pool)
                task_entries += code_entries
                task_stats = {**task_stats, "code_problems": len(code_entries)}
            log(f"02_imitation_data/seed{seed}: NQ-synthetic: {task_stats['valid']} of {task_stats['proposed']} "
                f"generated questions valid")

            # broad suite: every family's imitation prompts, or the user's own files
            if settings.broad_source == "world":
                broad_entries = broad_suite(world, settings.broad_max_prompts, seed, popularity=popularity, pool=pool)
                imported: list[dict[str, Any]] = []
                cleaning = None
            else:  # read, HTML to markdown, dedup, language filter (imitlib.data.cleaning); split below
                broad_entries = []
                imported, cleaning = clean_import_files(
                    [(_project_path(f.path), f.format) for f in settings.import_files],
                    strict=settings.cleaning.strict, html=settings.cleaning.html_to_markdown,
                    dedup=settings.cleaning.dedup, languages=settings.cleaning.languages)

            answer_sampling = sampling_from(settings.teacher, seed=seed)
            entries = broad_entries + task_entries
            code_cap = settings.teacher.code_max_new_tokens
            coded = [code_cap is not None and e["family"] == "code" for e in entries]
            answers = ask(teacher, [e["prompt"] for e, c in zip(entries, coded) if not c], answer_sampling,
                          "imitation answers")
            if any(coded):
                code_answers = iter(ask(teacher, [e["prompt"] for e, c in zip(entries, coded) if c],
                                        sampling_from(settings.teacher, seed=seed, max_new_tokens=code_cap),
                                        "imitation answers (code)"))
                other_answers = iter(answers)
                answers = [next(code_answers) if c else next(other_answers) for c in coded]

            # the held-out evaluation prompts: a greedy answer and a second, sampled one
            # real tracks: only the prompts 04 answers in chat (the rated and toxicity families' first
            # evaluate.max_prompts_per_family); the miniature world answers every held-out prompt
            answered = None
            if cfg.world.kind == "real":
                ev = cfg.evaluate
                answered = chat_items({f: world.tasks(f, "heldout") for f in families_of(world)},
                                      ev.rater_families, ev.toxicity_family, ev.max_prompts_per_family)
            evaluation = eval_suite(world, answered)
            eval_prompts = [e["prompt"] for e in evaluation]
            greedy = ask(teacher, eval_prompts, sampling_from(settings.teacher, temperature=0.0, seed=seed),
                         "evaluation answers (greedy)")
            second = ask(teacher, eval_prompts,
                         sampling_from(settings.teacher, temperature=settings.second_answer_temperature, seed=seed),
                         "evaluation answers (second, sampled)")
            teacher_model = teacher.model_id

        tokenizer = load_tokenizer(world.tokenizer_dir)
        if cleaning is not None:
            if settings.cleaning.block_tokens:
                imported = split_into_blocks(imported, tokenizer, settings.cleaning.block_tokens, cleaning)
            atomic_write_json(work / "cleaning_report.json", cleaning.to_dict())
        rows: list[dict[str, Any]] = []
        empty_answers = {"broad": 0, "task": 0}
        for entry, answer in zip(entries, answers):
            if not answer.strip():
                empty_answers[entry["kind"]] += 1
                continue
            messages = [{"role": "user", "content": entry["prompt"]}, {"role": "assistant", "content": answer}]
            rows.append({"id": entry["id"], "kind": entry["kind"], "family": entry["family"], "messages": messages,
                         "item_id": entry["item_id"], "reference": entry["reference"], "origin": entry["origin"],
                         "source": f"teacher:{teacher_model}"})
        for conversation in imported:
            rows.append({"id": conversation["id"], "kind": "broad", "family": "imported",
                         "messages": conversation["messages"], "item_id": None, "reference": None,
                         "origin": "imported", "source": conversation["source"]})
        for row in rows:
            row["tokens"] = conversation_tokens(tokenizer, row["messages"])

        budget_summary: dict[str, dict[str, Any]] = {}
        for kind_index, kind in enumerate(KINDS):
            of_kind = [r for r in rows if r["kind"] == kind]
            membership, summary = nested_budgets([r["tokens"] for r in of_kind], settings.token_budgets,
                                                 seed * 1000 + kind_index)
            for row, budgets in zip(of_kind, membership):
                row["budgets"] = budgets
            budget_summary[kind] = {str(b): info for b, info in summary.items()}

        from datasets import Dataset

        columns = ["id", "kind", "family", "messages", "tokens", "budgets", "item_id", "reference", "origin", "source"]
        dataset = Dataset.from_list([{c: r[c] for c in columns} for r in rows])
        with atomic_path(work / "conversations") as tmp:
            dataset.save_to_disk(str(tmp))
        _write_jsonl(work / "suites" / "broad.jsonl", broad_entries)
        _write_jsonl(work / "suites" / "task.jsonl", task_entries)
        # exposure: how many conversations of each subset state each evaluation fact
        facts = evaluation_facts(it for family in FACT_FAMILIES if family in families_of(world)
                                 for it in world.tasks(family, "heldout"))
        subsets = [(kind, int(b)) for kind in KINDS for b in budget_summary[kind]]
        exposure = exposure_table(rows, facts, subsets, getattr(world, "ground_truth", None) or {})
        with atomic_path(work / "exposure.parquet") as tmp:
            exposure.to_parquet(tmp, index=False)
        _write_jsonl(work / "teacher_eval.jsonl", [
            {"item_id": e["item_id"], "family": e["family"], "prompt": e["prompt"], "reference": e["reference"],
             "teacher_answer": a, "teacher_answer_2": b} for e, a, b in zip(evaluation, greedy, second)])

        kinds: dict[str, Any] = {}
        for kind in KINDS:
            of_kind = [r for r in rows if r["kind"] == kind]
            mix: dict[str, int] = {}
            for r in of_kind:
                mix[r["family"]] = mix.get(r["family"], 0) + 1
            queries = [r["messages"][0]["content"] if r["messages"][0]["role"] == "user" else r["messages"][1]["content"]
                       for r in of_kind]
            kinds[kind] = {"conversations": len(of_kind), "tokens": sum(r["tokens"] for r in of_kind),
                           "family_mix": mix, "empty_answers_dropped": empty_answers.get(kind, 0),
                           "query_nn_bleu": nearest_neighbour_bleu(queries, sample=settings.diversity_sample, seed=seed)}
        summary = {
            "seed": seed, "teacher_backend": settings.teacher.backend, "teacher_model": teacher_model,
            "teacher_cache": str(cache_dir), "world": world_hash, "token_budgets": settings.token_budgets,
            "budgets": budget_summary, "kinds": kinds, "task_suite": task_stats,
            "task_generation_requests": len(requests), "evaluation_prompts": len(evaluation),
            "seed_pairs": [p["id"] for p in pairs],
            "pool": {"prompts": len(pool), "individuals": len(individuals_of(pool)),
                     "evaluation_prompts_dropped": eval_prompts_dropped,
                     "source": "imitation_pool" if callable(getattr(world, "imitation_pool", None)) else "imitation split"},
            "exposure": {"facts": len(facts), "strata": stratum_counts(exposure)},
        }
        unfilled = [f"{k}:{b}" for k in KINDS for b, info in budget_summary[k].items() if not info["filled"]]
        if unfilled:
            log(f"02_imitation_data/seed{seed}: budgets not filled (too little data): {', '.join(unfilled)}")
        summary["unfilled_budgets"] = unfilled
        if cleaning is not None:
            summary["cleaning"] = {"read": cleaning.read, "kept": cleaning.kept, "blocks": len(imported),
                                   "counts": cleaning.counts()}
        atomic_write_json(work / "summary.json", summary)
        stage.info.update({"summary": summary, "timings": timings})
    return load_imitation_data(cfg, seed)


# ---------------------------------------------------------------------------------------------
# the tables the notebook shows (every seed: ``imitlib.runner.imitation_data``)
# ---------------------------------------------------------------------------------------------


def budget_table(data: dict[int, ImitationData]):
    """One row per (seed, kind, budget): conversations, tokens, filled."""
    import pandas as pd

    rows = [{"seed": seed, "kind": kind, "budget": int(budget), **info}
            for seed, d in data.items() for kind, budgets in d.summary["budgets"].items()
            for budget, info in budgets.items()]
    return pd.DataFrame(rows).sort_values(["seed", "kind", "budget"]).reset_index(drop=True)


def mix_table(data: dict[int, ImitationData]):
    """Task mix: one row per (kind, family) with conversations per seed and the mean share."""
    import pandas as pd

    rows = []
    for seed, d in data.items():
        for kind, info in d.summary["kinds"].items():
            total = max(info["conversations"], 1)
            for family, count in info["family_mix"].items():
                rows.append({"seed": seed, "kind": kind, "family": family, "conversations": count,
                             "share": count / total})
    frame = pd.DataFrame(rows)
    return frame.pivot_table(index=["kind", "family"], columns="seed", values="conversations", fill_value=0).assign(
        mean_share=frame.groupby(["kind", "family"])["share"].mean()).reset_index()


def diversity_table(data: dict[int, ImitationData]):
    """Per seed and kind: conversations, tokens, nearest-neighbour query BLEU, task-suite fallback share."""
    import pandas as pd

    rows = []
    for seed, d in data.items():
        for kind, info in d.summary["kinds"].items():
            rows.append({"seed": seed, "kind": kind, "conversations": info["conversations"], "tokens": info["tokens"],
                         "query_nn_bleu": info["query_nn_bleu"], "empty_answers_dropped": info["empty_answers_dropped"],
                         "task_fallback_share": d.summary["task_suite"]["fallback_share"] if kind == "task" else None})
    return pd.DataFrame(rows)


def task_generation_table(data: dict[int, ImitationData]):
    """Per seed, the NQ-synthetic generation: the prompt pool, requests sent, question candidates the
    teacher wrote (``proposed``), the valid new ones and their share, how many the suite used, and
    the templated fallback."""
    import pandas as pd

    rows = []
    for seed, d in data.items():
        task, pool = d.summary["task_suite"], d.summary.get("pool", {})
        rows.append({"seed": seed, "pool_prompts": pool.get("prompts"), "pool_individuals": pool.get("individuals"),
                     "generation_requests": d.summary["task_generation_requests"],
                     "proposed": task.get("proposed"), "valid": task.get("valid"), "valid_share": task.get("valid_share"),
                     "generated_used": task["generated"], "fallback": task["fallback"], "task_prompts": task["total"]})
    return pd.DataFrame(rows)


def cleaning_table(data: dict[int, ImitationData]):
    """Per seed, what cleaning did to imported files: conversations read, kept, turned into training
    blocks, and each reason a record was skipped or a conversation removed (empty for world prompts)."""
    import pandas as pd

    rows = []
    for seed, d in data.items():
        report = d.cleaning_report()
        if report is None:
            continue
        rows.append({"seed": seed, "files": len(report["files"]), "read": report["read"], "kept": report["kept"],
                     "html_converted": report["html_converted"], "blocks": report["blocks"], **report["counts"]})
    return pd.DataFrame(rows).fillna(0)


def exposure_strata_table(data: dict[int, ImitationData]):
    """Per seed, kind and budget: how many evaluation facts lie in each exposure stratum (0, 1-2, >=3),
    and whether the budget was filled (only filled budgets are trained on)."""
    import pandas as pd

    rows = []
    for seed, d in data.items():
        for kind, budgets in d.summary["exposure"]["strata"].items():
            for budget, counts in budgets.items():
                rows.append({"seed": seed, "kind": kind, "budget": int(budget),
                             "filled": d.summary["budgets"][kind][budget]["filled"], **counts})
    if not rows:  # the real tracks' items carry no entity facts to label
        return pd.DataFrame(columns=["seed", "kind", "budget", "filled"])
    return pd.DataFrame(rows).sort_values(["seed", "kind", "budget"]).reset_index(drop=True)


def conversation_table(data: dict[int, ImitationData]):
    """Every conversation of every seed without its messages (for length plots)."""
    import pandas as pd

    return pd.concat([d.table().assign(seed=seed) for seed, d in data.items()], ignore_index=True)


def samples_markdown(data: ImitationData, kind: str, count: int = 3, seed: int = 0) -> str:
    """A few conversations of one kind as Markdown (for display)."""
    parts = []
    for sample in data.samples(kind, count, seed):
        turns = "\n".join(f"> **{m['role']}**: {m['content']}".replace("\n", "\n> ") for m in sample["messages"])
        parts.append(f"`{sample['id']}` ({sample['family']})\n\n{turns}\n")
    return "\n".join(parts)
