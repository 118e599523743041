"""The crowdworker stand-in: a preference model over surface features of answers.

It sees only how an answer looks — length, lists, opening and closing phrases, confident or hedging
words, punctuation, frequent words — never whether it is true. It is a pairwise logistic regression
(Bradley–Terry over feature differences) fitted on pairs of (teacher answer, base-model answer) to
the same prompt, labelled "the teacher's answer is preferred". Its coefficients say which surface
traits it learned to reward.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

CONFIDENT_WORDS = ("certainly", "definitely", "clearly", "indeed", "absolutely", "always", "sure", "known", "famous")
HEDGE_WORDS = ("maybe", "perhaps", "might", "possibly", "probably", "unsure", "unclear", "think", "guess", "not sure")
LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
WORD = re.compile(r"[A-Za-z']+|\d+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text.strip()) if s.strip()]


def surface_features(text: str) -> dict[str, float]:
    """Style features of one answer that need no knowledge of facts."""
    words = _words(text)
    sentences = _sentences(text)
    lines = [line for line in text.splitlines() if line.strip()]
    list_items = len(LIST_MARKER.findall(text))
    n_words = len(words)
    distinct = len(set(words))
    counts = Counter(words)
    joined = " ".join(words)
    last = _words(sentences[-1]) if sentences else []
    return {
        "log_words": math.log1p(n_words),
        "sentences": float(len(sentences)),
        "lines": float(len(lines)),
        "list_items": float(list_items),
        "has_list": float(list_items >= 2),
        "mean_sentence_words": n_words / max(len(sentences), 1),
        "distinct_word_ratio": distinct / max(n_words, 1),
        "max_word_repeat": max(counts.values()) / max(n_words, 1) if counts else 0.0,
        "confident_words": float(sum(joined.count(w) for w in CONFIDENT_WORDS if " " in w)
                                 + sum(counts[w] for w in CONFIDENT_WORDS if " " not in w)),
        "hedge_words": float(sum(joined.count(w) for w in HEDGE_WORDS if " " in w)
                             + sum(counts[w] for w in HEDGE_WORDS if " " not in w)),
        "exclamations": float(text.count("!")),
        "questions": float(text.count("?")),
        "colons": float(text.count(":")),
        "commas": float(text.count(",")),
        "ends_with_period": float(text.rstrip().endswith(".")),
        "closing_summary": float(len(sentences) >= 3 and bool(set(last) & {"summary", "overall", "short", "conclusion", "altogether", "sum"})),
        "empty": float(n_words == 0),
    }


def opening_words(text: str, n: int = 2) -> list[str]:
    """The first ``n`` words (the opening phrase)."""
    return _words(text)[:n]


def closing_words(text: str, n: int = 2) -> list[str]:
    """The first ``n`` words of the last sentence (how a closing summary starts)."""
    sentences = _sentences(text)
    return _words(sentences[-1])[:n] if len(sentences) >= 2 else []


@dataclass
class StylePreferenceModel:
    """Pairwise logistic preference model over surface features.

    ``P(a preferred over b) = sigmoid(w · (z(a) - z(b)))`` with standardised features ``z`` and no
    intercept, so swapping the answers gives exactly the complementary probability.
    """

    regularization_c: float = 1.0
    lexical_features: int = 50
    feature_names: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    weights: np.ndarray | None = None
    lexicon: dict[str, list[str]] = field(default_factory=dict)
    fit_report: dict = field(default_factory=dict)

    # ---- features -----------------------------------------------------------------------------
    def _vocabularies(self, texts: Sequence[str]) -> None:
        opening = Counter(w for t in texts for w in opening_words(t))
        closing = Counter(w for t in texts for w in closing_words(t))
        words = Counter(w for t in texts for w in set(_words(t)))
        k = self.lexical_features
        self.lexicon = {
            "open": [w for w, _ in opening.most_common(max(k // 5, 0))],
            "close": [w for w, _ in closing.most_common(max(k // 5, 0))],
            "word": [w for w, _ in words.most_common(k)],
        }

    def raw_features(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Feature matrix (unstandardised) and feature names."""
        rows, names = [], None
        for text in texts:
            feats = surface_features(text)
            opening, closing, present = set(opening_words(text)), set(closing_words(text)), set(_words(text))
            for w in self.lexicon.get("open", []):
                feats[f"open:{w}"] = float(w in opening)
            for w in self.lexicon.get("close", []):
                feats[f"close:{w}"] = float(w in closing)
            for w in self.lexicon.get("word", []):
                feats[f"word:{w}"] = float(w in present)
            if names is None:
                names = list(feats)
            rows.append([feats[n] for n in names])
        if names is None:
            names = list(surface_features(""))
        return np.asarray(rows, dtype=float).reshape(len(rows), len(names)), names

    def _z(self, texts: Sequence[str]) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("the style preference model is not fitted: call fit() first")
        x, _ = self.raw_features(texts)
        return (x - self.mean) / self.scale

    # ---- fitting ------------------------------------------------------------------------------
    def fit(self, preferred: Sequence[str], other: Sequence[str], seed: int = 0) -> "StylePreferenceModel":
        """Fit on pairs where ``preferred[i]`` was preferred over ``other[i]`` (same prompt)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        if len(preferred) != len(other) or len(preferred) < 2:
            raise ValueError(f"need at least 2 answer pairs of equal length, got {len(preferred)} and {len(other)}")
        self._vocabularies(list(preferred) + list(other))
        x_all, self.feature_names = self.raw_features(list(preferred) + list(other))
        self.mean = x_all.mean(axis=0)
        self.scale = x_all.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        z_pref = (x_all[: len(preferred)] - self.mean) / self.scale
        z_other = (x_all[len(preferred):] - self.mean) / self.scale
        diffs = np.vstack([z_pref - z_other, z_other - z_pref])
        labels = np.concatenate([np.ones(len(preferred)), np.zeros(len(preferred))])
        model = LogisticRegression(C=self.regularization_c, fit_intercept=False, max_iter=2000, random_state=seed)
        model.fit(diffs, labels)
        self.weights = model.coef_[0].copy()
        folds = min(5, len(preferred))
        # Folds over prompts: a pair and its mirror image stay in the same fold.
        groups = np.concatenate([np.arange(len(preferred))] * 2)
        from sklearn.model_selection import GroupKFold

        cv = cross_val_score(
            LogisticRegression(C=self.regularization_c, fit_intercept=False, max_iter=2000),
            diffs, labels, cv=GroupKFold(n_splits=folds), groups=groups,
        ) if folds >= 2 else np.array([np.nan])
        self.fit_report = {
            "pairs": len(preferred),
            "train_accuracy": float(model.score(diffs, labels)),
            "cv_accuracy": float(np.mean(cv)),
            "cv_folds": folds,
            "regularization_c": self.regularization_c,
        }
        return self

    # ---- use ------------------------------------------------------------------------------------
    def prefer_probability(self, first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        """P(first[i] is preferred over second[i])."""
        z1, z2 = self._z(list(first)), self._z(list(second))
        logits = (z1 - z2) @ self.weights
        return 1.0 / (1.0 + np.exp(-logits))

    def coefficients(self) -> pd.DataFrame:
        """Fitted weights per feature (standardised units), largest magnitude first."""
        if self.weights is None:
            raise RuntimeError("the style preference model is not fitted: call fit() first")
        frame = pd.DataFrame({"feature": self.feature_names, "weight": self.weights})
        return frame.reindex(frame.weight.abs().sort_values(ascending=False).index).reset_index(drop=True)

    def to_dict(self) -> dict:
        """JSON-ready parameters (to save beside results)."""
        return {
            "regularization_c": self.regularization_c,
            "lexical_features": self.lexical_features,
            "feature_names": self.feature_names,
            "mean": None if self.mean is None else self.mean.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
            "weights": None if self.weights is None else self.weights.tolist(),
            "lexicon": self.lexicon,
            "fit_report": self.fit_report,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "StylePreferenceModel":
        """Rebuild a fitted model saved with :meth:`to_dict`."""
        model = cls(regularization_c=data["regularization_c"], lexical_features=data["lexical_features"])
        model.feature_names = list(data["feature_names"])
        model.mean = np.asarray(data["mean"]) if data["mean"] is not None else None
        model.scale = np.asarray(data["scale"]) if data["scale"] is not None else None
        model.weights = np.asarray(data["weights"]) if data["weights"] is not None else None
        model.lexicon = {k: list(v) for k, v in data["lexicon"].items()}
        model.fit_report = dict(data.get("fit_report", {}))
        return model
