"""Human pairwise ratings: importing CSV/JSONL files and a blind rating widget for JupyterLab.

A rating says whether a model's answer is better than, as good as, or worse than the teacher's
answer to the same item. Files hold one rating per row with ``model_id``, ``item_id`` and either
``verdict`` (better | tie | worse) or the blind form ``choice`` (A | B | tie) with ``model_side``
(A | B: where the model's answer was shown); ``rater`` is optional.

Human verdicts enter the samples table exactly as the simulated raters' do: one score per
(model, chat item), 1 better / 0.5 tie / 0 worse (the mean where several people rated a pair), in
the column ``pref_human`` (:func:`merge_human`); :func:`human_summary` puts them beside the
simulated raters' verdicts on the same pairs. :func:`sample_pairs` draws a seeded sample of pairs to
rate, since rating every pair of a study is out of reach.
"""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from imitlib.evaluate.raters import VERDICT_SCORE
from imitlib.stages import atomic_write_text

RATING_COLUMNS = ["model_id", "item_id", "rater", "verdict", "score", "source"]


class RatingsFileError(ValueError):
    """A ratings file is malformed; the message names the file and line."""


def _verdict_of(row: dict[str, Any], where: str) -> str:
    verdict = str(row.get("verdict") or "").strip().lower()
    if verdict:
        if verdict not in VERDICT_SCORE:
            raise RatingsFileError(f"{where}: verdict {verdict!r} is not one of better, tie, worse")
        return verdict
    choice = str(row.get("choice") or "").strip().lower()
    side = str(row.get("model_side") or "").strip().lower()
    if not choice:
        raise RatingsFileError(f"{where}: needs 'verdict' (better/tie/worse) or 'choice' with 'model_side'")
    if choice not in ("a", "b", "tie"):
        raise RatingsFileError(f"{where}: choice {choice!r} is not one of A, B, tie")
    if choice == "tie":
        return "tie"
    if side not in ("a", "b"):
        raise RatingsFileError(f"{where}: model_side {side!r} is not A or B")
    return "better" if choice == side else "worse"


def _rows(path: Path) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            return [(i + 2, dict(row)) for i, row in enumerate(reader)]  # line 1 is the header
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RatingsFileError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise RatingsFileError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            rows.append((number, obj))
        return rows
    raise RatingsFileError(f"{path}: unsupported ratings file type {path.suffix!r} (use .csv or .jsonl)")


def import_human_ratings(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Read rating files into one table (columns ``RATING_COLUMNS``).

    Raises:
        RatingsFileError: naming the file and line of the first bad row.
    """
    records = []
    for path in map(Path, paths):
        if not path.exists():
            raise RatingsFileError(f"{path}: ratings file not found")
        for number, row in _rows(path):
            where = f"{path}:{number}"
            missing = [key for key in ("model_id", "item_id") if not str(row.get(key) or "").strip()]
            if missing:
                raise RatingsFileError(f"{where}: missing {', '.join(missing)}")
            verdict = _verdict_of(row, where)
            records.append({
                "model_id": str(row["model_id"]).strip(), "item_id": str(row["item_id"]).strip(),
                "rater": str(row.get("rater") or "anonymous"), "verdict": verdict,
                "score": VERDICT_SCORE[verdict], "source": str(path),
            })
    return pd.DataFrame.from_records(records, columns=RATING_COLUMNS)


def human_preference(ratings: pd.DataFrame) -> pd.DataFrame:
    """Mean human score per (model_id, item_id) as ``pref_human``, with the number of ratings."""
    if ratings.empty:
        return pd.DataFrame({"model_id": pd.Series(dtype=object), "item_id": pd.Series(dtype=object),
                             "pref_human": pd.Series(dtype=float), "human_ratings": pd.Series(dtype="int64")})
    grouped = ratings.groupby(["model_id", "item_id"], sort=True)["score"]
    return pd.DataFrame({"pref_human": grouped.mean(), "human_ratings": grouped.size()}).reset_index()


def merge_human(samples: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """The samples table with ``pref_human`` / ``human_ratings`` on the chat rows that people rated.

    Raises:
        ValueError: when a rating names a (model, item) pair the table has no chat answer for.
    """
    prefs = human_preference(ratings)
    out = samples.drop(columns=[c for c in ("pref_human", "human_ratings") if c in samples.columns])
    chat = out["mode"] == "chat" if "mode" in out.columns else pd.Series(True, index=out.index)
    known = set(zip(out.loc[chat, "model_id"], out.loc[chat, "item_id"]))
    unknown = [(m, i) for m, i in zip(prefs["model_id"], prefs["item_id"]) if (m, i) not in known]
    if unknown:
        raise ValueError(f"{len(unknown)} human-rated pairs have no chat answer in the samples table, e.g. {unknown[:3]}")
    lookup = prefs.set_index(["model_id", "item_id"])
    keys = pd.MultiIndex.from_arrays([out["model_id"], out["item_id"]])
    out["pref_human"] = lookup["pref_human"].reindex(keys).to_numpy()
    out["human_ratings"] = lookup["human_ratings"].reindex(keys).fillna(0).astype("int64").to_numpy()
    out.loc[~chat, ["pref_human"]] = float("nan")
    out.loc[~chat, "human_ratings"] = 0
    return out


def human_summary(samples: pd.DataFrame, raters: Sequence[str] | None = None) -> pd.DataFrame:
    """Per model, on the pairs people rated: mean score and share rated as good or better, by humans
    and by each simulated rater on the same pairs.

    Args:
        samples: a samples table with ``pref_human`` (:func:`merge_human`).
        raters: simulated verdict columns to set beside it (default: every ``pref_*`` column).

    Returns:
        One row per model: ``model_id, role, pairs`` and ``<column>:rate`` / ``<column>:good_or_better``.
    """
    if "pref_human" not in samples.columns:
        raise ValueError("samples table has no pref_human column: merge ratings with merge_human first")
    rated = samples[samples["pref_human"].notna()]
    columns = ["pref_human", *(raters if raters is not None else
                               sorted(c for c in samples.columns if c.startswith("pref_") and c != "pref_human"))]
    rows = []
    for (model_id, role), group in rated.groupby(["model_id", "role"], sort=True):
        row: dict[str, Any] = {"model_id": model_id, "role": role, "pairs": len(group)}
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            row[f"{column}:rate"] = float(values.mean()) if len(values) else float("nan")
            row[f"{column}:good_or_better"] = float((values >= 0.5).mean()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def ratings_so_far(samples: pd.DataFrame, stores: Sequence[str | Path]) -> pd.DataFrame:
    """:func:`human_summary` of the rating files that exist among ``stores`` (empty before the first click)."""
    paths = [Path(p) for p in stores if Path(p).exists()]
    ratings = import_human_ratings(paths) if paths else pd.DataFrame(columns=RATING_COLUMNS)
    return human_summary(merge_human(samples, ratings))


def sample_pairs(pairs: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """A seeded sample of ``size`` pairs (all of them when there are fewer), spread evenly over models.

    The draw depends only on the pairs' (model_id, item_id) keys and the seed, not on the table's
    row order: pairs are sorted by key, then drawn round-robin over models in a seeded order.
    """
    if size < 1:
        raise ValueError(f"sample size must be >= 1, got {size}")
    needed = {"model_id", "item_id"}
    if not needed <= set(pairs.columns):
        raise ValueError(f"pairs table lacks columns {sorted(needed - set(pairs.columns))}")
    ordered = pairs.sort_values(["model_id", "item_id"], kind="stable").reset_index(drop=True)
    rng = random.Random(f"human-sample-{seed}")
    by_model: dict[str, list[int]] = {}
    for index, model_id in enumerate(ordered["model_id"]):
        by_model.setdefault(str(model_id), []).append(index)
    queues = []
    for model_id in sorted(by_model):
        rows = by_model[model_id][:]
        rng.shuffle(rows)
        queues.append(rows)
    picked: list[int] = []
    while len(picked) < min(size, len(ordered)):
        for rows in queues:
            if rows and len(picked) < size:
                picked.append(rows.pop())
    return ordered.iloc[sorted(picked)].reset_index(drop=True)


class BlindPairwiseWidget:
    """Blind pairwise rating in JupyterLab: model answer vs teacher answer, sides randomised.

    Shows the prompt and two answers labelled A and B; the model's side is drawn at random per
    pair and the model id is never shown. Each click appends a rating (with ``choice`` and the
    hidden ``model_side``) to ``store`` (JSONL, rewritten atomically), which
    :func:`import_human_ratings` reads. Pairs already rated by this rater in ``store`` are skipped.

    Args:
        pairs: table with ``model_id``, ``item_id``, ``prompt``, ``answer``, ``teacher_answer``.
        store: JSONL file under outputs/ to keep the ratings in.
        rater: the rater's name.
        seed: order and side randomisation, and the sample.
        sample_size: rate a seeded sample of this many pairs (:func:`sample_pairs`; None: all).
    """

    def __init__(self, pairs: pd.DataFrame, store: str | Path, rater: str = "rater", seed: int = 0,
                 sample_size: int | None = None) -> None:
        import ipywidgets as widgets

        needed = {"model_id", "item_id", "prompt", "answer", "teacher_answer"}
        if not needed <= set(pairs.columns):
            raise ValueError(f"pairs table lacks columns {sorted(needed - set(pairs.columns))}")
        if sample_size is not None:
            pairs = sample_pairs(pairs, sample_size, seed)
        self.store = Path(store)
        self.rater = rater
        rng = random.Random(f"{seed}-{rater}")
        done = set()
        if self.store.exists():
            for row in import_human_ratings([self.store]).itertuples():
                if row.rater == rater:
                    done.add((row.model_id, row.item_id))
        todo = [r for r in pairs.to_dict("records") if (r["model_id"], r["item_id"]) not in done]
        rng.shuffle(todo)
        self.queue = [dict(r, model_side=rng.choice("AB")) for r in todo]
        self.position = 0
        self.prompt_box = widgets.HTML()
        self.answer_a = widgets.Textarea(disabled=True, layout=widgets.Layout(width="48%", height="180px"))
        self.answer_b = widgets.Textarea(disabled=True, layout=widgets.Layout(width="48%", height="180px"))
        self.buttons = {
            "A": widgets.Button(description="A is better"),
            "tie": widgets.Button(description="About the same"),
            "B": widgets.Button(description="B is better"),
        }
        for choice, button in self.buttons.items():
            button.on_click(lambda _b, c=choice: self.rate(c))
        self.status = widgets.Label()
        self.view = widgets.VBox([
            self.prompt_box, widgets.HBox([self.answer_a, self.answer_b]),
            widgets.HBox(list(self.buttons.values())), self.status,
        ])
        self._show()

    @property
    def current(self) -> dict | None:
        return self.queue[self.position] if self.position < len(self.queue) else None

    def _show(self) -> None:
        import html

        pair = self.current
        if pair is None:
            self.prompt_box.value = "<b>All pairs rated.</b>"
            self.answer_a.value = self.answer_b.value = ""
            for button in self.buttons.values():
                button.disabled = True
        else:
            model_text, teacher_text = pair["answer"], pair["teacher_answer"]
            left, right = (model_text, teacher_text) if pair["model_side"] == "A" else (teacher_text, model_text)
            self.prompt_box.value = f"<b>Prompt:</b> {html.escape(str(pair['prompt']))}"
            self.answer_a.value, self.answer_b.value = str(left), str(right)
        self.status.value = f"{self.position} / {len(self.queue)} rated this session; saved to {self.store}"

    def rate(self, choice: str) -> None:
        """Record ``A``, ``B`` or ``tie`` for the pair on screen and show the next one."""
        pair = self.current
        if pair is None:
            return
        record = {"model_id": pair["model_id"], "item_id": pair["item_id"], "rater": self.rater,
                  "choice": choice, "model_side": pair["model_side"], "time": time.time()}
        existing = self.store.read_text(encoding="utf-8") if self.store.exists() else ""
        atomic_write_text(self.store, existing + json.dumps(record) + "\n")
        self.position += 1
        self._show()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)
