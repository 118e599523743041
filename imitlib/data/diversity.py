"""Query diversity: nearest-neighbour BLEU between queries (the paper reports 8% for ShareGPT-Mix)."""

from __future__ import annotations

import random
from typing import Sequence


def nearest_neighbour_bleu(queries: Sequence[str], sample: int = 300, candidates: int = 10, seed: int = 0) -> float:
    """Mean over queries of the sentence BLEU (0–100) against the most similar other query.

    The most similar query is the one with the highest BLEU among the ``candidates`` others
    closest in TF-IDF cosine (an exact search over all pairs costs O(n²) BLEU calls and rarely
    changes the maximum). At most ``sample`` queries are used, drawn with ``seed``.

    Returns:
        the mean nearest-neighbour BLEU; NaN when there are fewer than two distinct queries.
    """
    import numpy as np
    from sacrebleu.metrics import BLEU
    from sklearn.feature_extraction.text import TfidfVectorizer

    pool = [q for q in queries if q.strip()]
    if len(pool) > sample:
        pool = random.Random(seed).sample(pool, sample)
    if len(pool) < 2:
        return float("nan")
    matrix = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit_transform(pool)
    similarity = (matrix @ matrix.T).toarray()
    np.fill_diagonal(similarity, -1.0)
    bleu = BLEU(effective_order=True)
    scores = []
    k = min(candidates, len(pool) - 1)
    for index, query in enumerate(pool):
        nearest = np.argpartition(-similarity[index], k - 1)[:k]
        scores.append(max(bleu.sentence_score(query, [pool[j]]).score for j in nearest))
    return float(np.mean(scores))
