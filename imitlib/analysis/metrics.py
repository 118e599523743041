"""Every number of the analysis, per model configuration, each with a bootstrap interval.

A *model configuration* is ``(role, base_model, data_kind, imitation_tokens)``: the same model
trained under several seeds is one configuration, and its statistic pools the seeds (the
bootstrap resamples seeds, then items; see :mod:`imitlib.analysis.stats`).

Metrics (names used in every table):
    ``acc:<task>``              mean ``correct`` on a scored benchmark task (``mode`` benchmark)
    ``acc:<task> (chat)``       mean ``correct`` of chat answers to that task's prompts (``mode`` chat)
    ``toxicity``                mean toxicity probability where scored
    ``<pref>:rate``             mean verdict vs the teacher (1 better, 0.5 tie, 0 worse)
    ``<pref>:good_or_better``   share of verdicts >= 0.5 (the paper's "as good as or better")
    ``<pref>:length_controlled``  AlpacaEval-style length-controlled rate
    ``<pref>:style_controlled``   the same with a list-markup covariate too (Chatbot-Arena style)
    ``<pref>:length_slope``     the length coefficient of the length-controlled fit
    ``style:list``              uses a list when the teacher's answer does
    ``style:summary``           ends with a summary when the teacher's answer does
    ``style:overlap``           unigram F1 with the teacher's answer (× 100)
    ``style:length_r``          Pearson r of answer lengths vs the teacher's
    ``style:authoritative``     share of answers in an authoritative tone
    ``style:score``             mean of list, summary, overlap / 100 and authoritative (style match in [0, 1])

The *ceiling* configuration ``(ceiling, teacher, none, 0)`` scores the teacher's second sampled
answer against its first with the same style metrics.

Rater-panel columns ``pref_w000`` … ``pref_w100`` (the verdict of a rater weighing facts by w)
get ``:rate`` and ``:good_or_better`` only. Where benchmark rows of imitation models carry
``exposure`` (training conversations of the model's data subset in which the teacher states the
item's fact) and ``exposure_stratum`` (``0``, ``1-2``, ``>=3``), each such model also gets, per
scored task and stratum ``s`` (and ``exposed`` = every stratum but ``0``):

    ``stratum_acc:<task>@<s>``      its accuracy on the stratum's items
    ``gain_vs_base:<task>@<s>``     its accuracy minus the base model's, on the same items (paired)
    ``gain_vs_control:<task>@<s>``  the same against the replay-only control
    ``cost:tokens_per_fact:<task>`` imitation tokens per net fact gained over the base (per seed)
    ``cost:tokens_to_match:<task>`` tokens needed for the rarest fact to reach the teacher's
                                    accuracy, extrapolated (see :func:`coverage_cost`)

Every estimate also carries its value within each seed (``Estimate.per_seed``), the input of the
seed-level inference of :mod:`imitlib.analysis.claims`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from imitlib.analysis import style
from imitlib.analysis.preference import controlled_preference, fit_logistic
from imitlib.analysis.stats import Bootstrap, Estimate

CONFIG_COLUMNS = ["role", "base_model", "data_kind", "imitation_tokens"]
REQUIRED_SAMPLE_COLUMNS = (
    "model_id", "seed", "role", "base_model", "base_params", "data_kind", "imitation_tokens", "task",
    "item_id", "prompt", "reference", "answer", "teacher_answer", "teacher_answer_2", "correct", "toxicity",
)
PREFERENCE_COLUMNS = ("pref_style", "pref_fact", "pref_llm")
WEIGHT_COLUMN = re.compile(r"pref_w\d{3}")  # the rater panel at fact weight w: pref_w{round(100 w):03d}
EXPOSURE_STRATA = ("0", "1-2", ">=3")
EXPOSED = "exposed"
ROLES = ("base", "imitation", "replay_control", "teacher")
STYLE_METRICS = ("style:list", "style:summary", "style:overlap", "style:length_r", "style:authoritative", "style:score")
CEILING = ("ceiling", "teacher", "none", 0)


def validate_samples(samples: pd.DataFrame, source: str = "samples") -> pd.DataFrame:
    """Check the tidy table's columns and types; return it with normalised dtypes.

    Raises:
        ValueError: naming ``source`` and the missing or malformed columns.
    """
    missing = [c for c in REQUIRED_SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing} (see docs/ARCHITECTURE.md, tidy per-sample table)")
    out = samples.copy()
    numeric = ("correct", "toxicity", "exposure", *PREFERENCE_COLUMNS, *weight_columns(out))
    for column in [c for c in numeric if c in out.columns]:  # nullable integers (Int64) become floats with NaN
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    if "exposure" in out.columns:
        out["exposure_stratum"] = _strata(out, source)
    for column in ("seed", "imitation_tokens", "base_params"):
        values = pd.to_numeric(out[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise ValueError(f"{source}: column {column!r} must be numeric; row {row} has {out[column].iloc[row]!r}")
        out[column] = values.astype("int64")
    if "mode" not in out.columns:
        out["mode"] = "benchmark"
    out["mode"] = out["mode"].fillna("benchmark").replace("", "benchmark")
    bad_roles = set(out["role"]) - set(ROLES)
    if bad_roles:
        raise ValueError(f"{source}: unknown role values {sorted(bad_roles)}; expected {' | '.join(ROLES)}")
    for column in ("answer", "teacher_answer", "teacher_answer_2", "prompt", "reference"):
        out[column] = out[column].astype("object").where(out[column].notna(), None)
    return out


def weight_columns(samples: pd.DataFrame) -> list[str]:
    """The rater-panel verdict columns of a samples table (``pref_w000`` … ``pref_w100``), sorted."""
    return sorted(c for c in samples.columns if WEIGHT_COLUMN.fullmatch(str(c)))


def exposure_stratum(exposure: pd.Series) -> pd.Series:
    """``0``, ``1-2`` or ``>=3`` for each exposure count (None where the count is missing)."""
    e = pd.to_numeric(exposure, errors="coerce")
    labels = np.select([e == 0, (e >= 1) & (e <= 2), e >= 3], list(EXPOSURE_STRATA), default="")
    return pd.Series(labels, index=exposure.index, dtype="object").replace("", None)


def _strata(samples: pd.DataFrame, source: str) -> pd.Series:
    """The rows' exposure strata: derived from ``exposure``, checked against ``exposure_stratum`` if given."""
    bad = samples["exposure"].notna() & ((samples["exposure"] < 0) | (samples["exposure"] % 1 != 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{source}: column 'exposure' must hold counts >= 0; row {row} has {samples['exposure'].iloc[row]!r}")
    derived = exposure_stratum(samples["exposure"])
    if "exposure_stratum" in samples.columns:
        given = samples["exposure_stratum"].astype("object").where(samples["exposure_stratum"].notna(), None)
        differs = derived.notna() & given.notna() & (derived != given.astype(str))
        if differs.any():
            row = int(np.flatnonzero(differs.to_numpy())[0])
            raise ValueError(f"{source}: row {row}: exposure_stratum {given.iloc[row]!r} does not match exposure "
                             f"{samples['exposure'].iloc[row]!r} (expected {derived.iloc[row]!r})")
    return derived


def add_style_features(samples: pd.DataFrame) -> pd.DataFrame:
    """Add per-row style features of the answer and of the teacher's answer, and their overlap."""
    cache: dict[str, dict[str, float]] = {}

    def features(text: object) -> dict[str, float]:
        if text is None or (isinstance(text, float) and np.isnan(text)):
            return {k: np.nan for k in ("uses_list", "ends_with_summary", "authoritative", "length", "list_items")}
        key = str(text)
        if key not in cache:
            cache[key] = style.style_features(key)
        return cache[key]

    out = samples.copy()
    own = pd.DataFrame([features(t) for t in out["answer"]], index=out.index)
    ref = pd.DataFrame([features(t) for t in out["teacher_answer"]], index=out.index)
    for column in own.columns:
        out[column] = own[column]
        out[f"teacher_{column}"] = ref[column]
    out["overlap"] = [
        style.unigram_overlap(a, t) if a is not None and t is not None else np.nan
        for a, t in zip(out["answer"], out["teacher_answer"])
    ]
    return out


def ceiling_rows(samples: pd.DataFrame) -> pd.DataFrame:
    """Rows that score the teacher's second sample against its first, one per (seed, item)."""
    rows = samples[samples["teacher_answer"].notna() & samples["teacher_answer_2"].notna()]
    rows = rows.drop_duplicates(["seed", "item_id"]).copy()
    rows["answer"] = rows["teacher_answer_2"]
    for column, value in zip(CONFIG_COLUMNS, CEILING):
        rows[column] = value
    rows["model_id"] = [f"s{s}/teacher-2nd-sample" for s in rows["seed"]]
    return rows


@dataclass
class MetricStore:
    """Estimates keyed by (configuration, metric), with the bootstrap that made them."""

    bootstrap: Bootstrap
    estimates: dict[tuple, Estimate] = field(default_factory=dict)
    base_params: dict[str, int] = field(default_factory=dict)

    def get(self, config: tuple | None, metric: str) -> Estimate:
        """The estimate of ``metric`` for ``config`` (a missing estimate when either is absent)."""
        if config is None or (tuple(config), metric) not in self.estimates:
            return Estimate.missing(self.bootstrap.n_resamples)
        return self.estimates[(tuple(config), metric)]

    def put(self, config: tuple, metric: str, estimate: Estimate) -> None:
        self.estimates[(tuple(config), metric)] = estimate

    def metrics(self) -> list[str]:
        return sorted({m for _, m in self.estimates})

    def frame(self) -> pd.DataFrame:
        """Long table: one row per (configuration, metric) with value, lo, hi."""
        rows = []
        for (config, metric), est in self.estimates.items():
            row = dict(zip(CONFIG_COLUMNS, config))
            row["base_params"] = self.base_params.get(config[1], 0)
            row.update(metric=metric, value=est.value, lo=est.lo, hi=est.hi)
            rows.append(row)
        frame = pd.DataFrame(rows, columns=[*CONFIG_COLUMNS, "base_params", "metric", "value", "lo", "hi"])
        return frame.sort_values(["metric", "base_params", "role", "data_kind", "imitation_tokens"]).reset_index(drop=True)

    def seed_frame(self) -> pd.DataFrame:
        """Long table of per-seed values: one row per (configuration, metric, seed) with data."""
        seeds = self.bootstrap.seeds.tolist()
        rows = []
        for (config, metric), est in self.estimates.items():
            for seed, value in zip(seeds, self.bootstrap.per_seed(est)):
                if np.isfinite(value):
                    rows.append({**dict(zip(CONFIG_COLUMNS, config)), "base_params": self.base_params.get(config[1], 0),
                                 "metric": metric, "seed": int(seed), "value": float(value)})
        frame = pd.DataFrame(rows, columns=[*CONFIG_COLUMNS, "base_params", "metric", "seed", "value"])
        return frame.sort_values(["metric", "base_params", "role", "data_kind", "imitation_tokens", "seed"]).reset_index(drop=True)


def _style_metrics(rows: pd.DataFrame, boot: Bootstrap) -> dict[str, Estimate]:
    out: dict[str, Estimate] = {}
    listed = rows[rows["teacher_uses_list"] == 1.0]
    summarised = rows[rows["teacher_ends_with_summary"] == 1.0]
    out["style:list"] = boot.mean(listed, "uses_list")
    out["style:summary"] = boot.mean(summarised, "ends_with_summary")
    out["style:overlap"] = boot.mean(rows, "overlap")
    out["style:length_r"] = boot.pearson(rows, "length", "teacher_length")
    out["style:authoritative"] = boot.mean(rows, "authoritative")
    parts = [out["style:list"], out["style:summary"], out["style:overlap"], out["style:authoritative"]]

    def score(list_rate, summary_rate, overlap, authoritative):
        stacked = np.stack(np.broadcast_arrays(
            np.asarray(list_rate, float), np.asarray(summary_rate, float),
            np.asarray(overlap, float) / 100.0, np.asarray(authoritative, float),
        ))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as they should
            return np.nanmean(stacked, axis=0)

    out["style:score"] = boot.combine(score, *parts)
    return out


def compute_metrics(
    samples: pd.DataFrame,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    rng_seed: int = 0,
    style_tasks: list[str] | None = None,
    preference_columns: tuple[str, ...] = PREFERENCE_COLUMNS,
    progress: bool = False,
) -> MetricStore:
    """Compute every metric of every configuration (see the module docstring).

    Args:
        samples: the tidy per-sample table (all seeds), validated by :func:`validate_samples`.
        n_resamples: bootstrap replicates.
        confidence: interval level.
        rng_seed: seed of the resampling.
        style_tasks: tasks whose rows feed the style metrics; empty or None = every row that has a
            teacher answer.
        preference_columns: verdict columns to summarise (those absent or all-NaN are skipped).
        progress: show a progress bar over configurations.
    """
    from tqdm.auto import tqdm

    samples = add_style_features(samples)
    ceiling = add_style_features(ceiling_rows(samples))
    boot = Bootstrap.from_samples(samples, n_resamples, confidence, rng_seed)
    store = MetricStore(boot, base_params=samples.groupby("base_model")["base_params"].max().to_dict())
    store.base_params.setdefault("teacher", int(samples["base_params"].max()))
    samples["scored_as"] = np.where(samples["mode"] == "chat", samples["task"] + " (chat)", samples["task"])
    scored_tasks = sorted(samples.loc[samples["correct"].notna(), "scored_as"].unique())
    pref_columns = [c for c in preference_columns if c in samples.columns and samples[c].notna().any()]
    panel_columns = [c for c in weight_columns(samples) if samples[c].notna().any()]

    def is_style_row(frame: pd.DataFrame) -> pd.Series:
        mask = frame["teacher_answer"].notna() & frame["answer"].notna()
        if style_tasks:
            mask &= frame["task"].isin(style_tasks)
        return mask

    groups = list(samples.groupby(CONFIG_COLUMNS, sort=True))
    for config, rows in tqdm(groups, desc="metrics per model", disable=not progress):
        for task in scored_tasks:
            task_rows = rows[(rows["scored_as"] == task) & rows["correct"].notna()]
            if not task_rows.empty:
                store.put(config, f"acc:{task}", boot.mean(task_rows, "correct"))
        if rows["toxicity"].notna().any():
            store.put(config, "toxicity", boot.mean(rows[rows["toxicity"].notna()], "toxicity"))
        for column in pref_columns:
            rated = rows[rows[column].notna()].copy()
            if rated.empty:
                continue
            rated["_good"] = (rated[column] >= 0.5).astype(float)
            store.put(config, f"{column}:rate", boot.mean(rated, column))
            store.put(config, f"{column}:good_or_better", boot.mean(rated, "_good"))
            controlled, slope = controlled_preference(rated, boot, column, ("length",))
            store.put(config, f"{column}:length_controlled", controlled)
            store.put(config, f"{column}:length_slope", slope)
            store.put(config, f"{column}:style_controlled", controlled_preference(rated, boot, column, ("length", "list"))[0])
        for column in panel_columns:
            rated = rows[rows[column].notna()]
            if not rated.empty:
                store.put(config, f"{column}:rate", boot.mean(rated, column))
                store.put(config, f"{column}:good_or_better", boot.mean(rated.assign(_good=(rated[column] >= 0.5).astype(float)), "_good"))
        style_rows = rows[is_style_row(rows)]
        if not style_rows.empty:
            for metric, est in _style_metrics(style_rows, boot).items():
                store.put(config, metric, est)
    _exposure_metrics(samples, boot, store)
    ceiling_style = ceiling[is_style_row(ceiling)]
    if not ceiling_style.empty:
        for metric, est in _style_metrics(ceiling_style, boot).items():
            store.put(CEILING, metric, est)
    return store


# ---- exposure strata and the cost of coverage ---------------------------------------------------
def is_control(config: tuple) -> bool:
    """A replay-only control: role ``replay_control``, or (older labelling) an imitation run without data."""
    return config[0] == "replay_control" or (config[0] == "imitation" and config[2] == "none")


def _reference(reference: pd.DataFrame, name: str) -> pd.Series:
    """A reference model's ``correct`` per (seed, item), named ``name`` (for joining)."""
    return reference.groupby(["seed", "item_id"])["correct"].mean().rename(name)


def _paired(rows: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``diff`` = its ``correct`` minus the reference model's on the same (seed, item)."""
    out = rows.join(_reference(reference, "_ref"), on=["seed", "item_id"])
    return out.assign(diff=out["correct"] - out["_ref"])[out["_ref"].notna()]


def _exposure_metrics(samples: pd.DataFrame, boot: Bootstrap, store: MetricStore) -> None:
    if "exposure" not in samples.columns:
        return
    scored = samples[(samples["mode"] != "chat") & samples["correct"].notna()]
    labelled = scored[(scored["role"] == "imitation") & scored["exposure"].notna()]
    if labelled.empty:
        return
    teacher = scored[scored["role"] == "teacher"]
    controls = scored[[is_control(c) for c in scored[CONFIG_COLUMNS].itertuples(index=False, name=None)]]
    for config, rows in labelled.groupby(CONFIG_COLUMNS, sort=True):
        base_model = config[1]
        references = {
            "base": scored[(scored["role"] == "base") & (scored["base_model"] == base_model)],
            "control": controls[controls["base_model"] == base_model],
        }
        for task, task_rows in rows.groupby("scored_as", sort=True):
            paired = {name: _paired(task_rows, ref[ref["scored_as"] == task]) for name, ref in references.items()}
            for stratum in (*EXPOSURE_STRATA, EXPOSED):
                def select(frame: pd.DataFrame) -> pd.DataFrame:
                    return frame[frame["exposure"] >= 1] if stratum == EXPOSED else frame[frame["exposure_stratum"] == stratum]

                subset = select(task_rows)
                if subset.empty:
                    continue
                store.put(config, f"stratum_acc:{task}@{stratum}", boot.mean(subset, "correct"))
                for name, frame in paired.items():
                    frame = select(frame)
                    if not frame.empty:
                        store.put(config, f"gain_vs_{name}:{task}@{stratum}", boot.mean(frame, "diff"))
            tokens_per_fact, tokens_to_match = coverage_cost(
                task_rows, references["base"][references["base"]["scored_as"] == task],
                teacher[teacher["scored_as"] == task], boot.seeds)
            store.put(config, f"cost:tokens_per_fact:{task}", _seed_only(tokens_per_fact, boot.n_resamples))
            store.put(config, f"cost:tokens_to_match:{task}", _seed_only(tokens_to_match, boot.n_resamples))


def _seed_only(per_seed: np.ndarray, n_resamples: int) -> Estimate:
    """An estimate known only seed by seed (its value the mean over seeds; no bootstrap view)."""
    finite = per_seed[np.isfinite(per_seed)]
    value = float(finite.mean()) if finite.size else float("nan")
    return Estimate(value, float("nan"), float("nan"), np.full(n_resamples, np.nan), per_seed)


COST_HORIZON = 10.0  # the accuracy-vs-exposure curve is read at most this many times past the largest exposure seen


def coverage_cost(rows: pd.DataFrame, base: pd.DataFrame, teacher: pd.DataFrame,
                  seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: imitation tokens per net fact gained, and tokens to match the teacher on all facts.

    For one imitation model's benchmark rows of one task (columns ``seed, item_id, correct,
    exposure, imitation_tokens``), against the base model's and the teacher's rows on the same items:

    * tokens per fact gained = the model's imitation tokens / (its correct answers − the base's, on
      the same items); NaN when it gains no fact.
    * tokens to match = ``T · e* / ê_min``. ``e*`` is the exposure at which a logistic fit of the
      model's correctness on ``log(1 + exposure)`` reaches the teacher's accuracy on these items
      (0 if already reached; NaN if accuracy does not rise with exposure; +inf, "not reached", when
      ``e*`` lies beyond :data:`COST_HORIZON` times the largest exposure of these items, where the
      fitted curve is too nearly flat to extrapolate). ``ê_min`` is the
      exposure of the rarest item, read from a power law ``exposure ∝ rank^β`` fitted to the items'
      positive exposures ranked from most to least exposed (the popularity curve): at budget T the
      rarest fact is stated ``ê_min`` times, and exposure grows in proportion to the tokens.
    """
    per_fact = np.full(len(seeds), np.nan)
    to_match = np.full(len(seeds), np.nan)
    joined = rows.join(_reference(base, "_base"), on=["seed", "item_id"]).join(
        _reference(teacher, "_teacher"), on=["seed", "item_id"])
    position = {seed: i for i, seed in enumerate(np.asarray(seeds).tolist())}
    for seed, own in joined.groupby("seed", sort=True):
        if seed not in position:
            continue
        i = position[seed]
        tokens = float(own["imitation_tokens"].iloc[0])
        with_base = own[own["_base"].notna()]
        gained = float((with_base["correct"] - with_base["_base"]).sum()) if len(with_base) else float("nan")
        if gained > 0:
            per_fact[i] = tokens / gained
        exposure = own["exposure"].to_numpy(dtype=float)
        if own["_teacher"].isna().all() or np.ptp(exposure) == 0:
            continue
        target = float(np.clip(own["_teacher"].mean(), 0.01, 0.99))
        features = np.column_stack([np.ones(len(own)), np.log1p(exposure)])
        a, b = fit_logistic(features, own["correct"].to_numpy(dtype=float), np.ones((1, len(own))), ridge=1e-6)[0]
        if b <= 0:
            continue
        needed = max(0.0, float(np.expm1(min((np.log(target / (1 - target)) - a) / b, 700.0))))
        if needed > COST_HORIZON * max(float(exposure.max()), 1.0):
            to_match[i] = np.inf  # not reached within the horizon: the slope is ~0
            continue
        ranked = np.sort(exposure)[::-1]
        ranks = np.arange(1, len(ranked) + 1, dtype=float)
        positive = ranked > 0
        if np.unique(ranked[positive]).size < 2:
            continue
        slope, intercept = np.polyfit(np.log(ranks[positive]), np.log(ranked[positive]), 1)
        rarest = float(np.exp(intercept + slope * np.log(len(ranked))))
        to_match[i] = tokens * needed / rarest
    return per_fact, to_match
