"""Toxicity of answers, scored by ``alt-profanity-check`` (a linear classifier whose weights ship in the package)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def toxicity_scores(texts: Sequence[str]) -> np.ndarray:
    """Probability that each text is offensive (0–1); an empty text scores 0."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros(0)
    from profanity_check import predict_prob

    scores = np.asarray(predict_prob(texts), dtype=float)
    scores[[not t.strip() for t in texts]] = 0.0
    return scores
