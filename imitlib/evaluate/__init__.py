"""Evaluation: lm-eval benchmarks, pairwise raters vs the teacher, human ratings, toxicity, the tidy table.

The ``04_evaluate`` stage (:mod:`imitlib.study.evaluate`) is built from these pieces; they
(``run_benchmarks``, the raters, ``toxicity_scores``, ``import_human_ratings``,
``BlindPairwiseWidget``) work on their own too.
"""

from imitlib.evaluate.benchmarks import benchmark_samples, benchmark_scores, run_benchmarks, write_world_tasks
from imitlib.evaluate.answers import ModelEntry, answer_model, read_answers
from imitlib.evaluate.core import SAMPLE_COLUMNS, evaluate_models, rate_answers
from imitlib.evaluate.human import (BlindPairwiseWidget, RatingsFileError, human_preference, human_summary,
                                    import_human_ratings, merge_human, ratings_so_far, sample_pairs)
from imitlib.evaluate.raters import CrowdRater, FactRater, LLMJudge, PanelRater, RaterPanel, rate_vs_reference
from imitlib.evaluate.scorers import compare_accuracy, majority_baseline, score_chat_answer, stated_choice
from imitlib.evaluate.style import quality, quality_features
from imitlib.evaluate.toxicity import toxicity_scores

__all__ = [
    "answer_model", "read_answers", "rate_answers", "evaluate_models", "ModelEntry", "SAMPLE_COLUMNS",
    "run_benchmarks", "write_world_tasks", "benchmark_samples", "benchmark_scores",
    "quality", "quality_features", "CrowdRater", "PanelRater", "RaterPanel", "FactRater", "LLMJudge", "rate_vs_reference",
    "compare_accuracy", "majority_baseline", "score_chat_answer", "stated_choice",
    "import_human_ratings", "human_preference", "human_summary", "merge_human", "ratings_so_far", "sample_pairs", "BlindPairwiseWidget", "RatingsFileError", "toxicity_scores",
]
