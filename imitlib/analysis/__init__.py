"""Style vs factuality: metrics, bootstrap intervals, the paper's tables and the claims scorecard.

The ``05_analysis`` stage (:mod:`imitlib.study.analysis`: ``run_analysis``) reads ``04_evaluate``
results with these pieces and writes the tables and the scorecard.
"""

from imitlib.analysis.claims import scorecard, scorecard_markdown
from imitlib.analysis.metrics import MetricStore, compute_metrics, validate_samples
from imitlib.analysis.stats import Bootstrap, Estimate, decide
from imitlib.analysis.style import ends_with_summary, is_authoritative, unigram_overlap, uses_list, word_count

__all__ = [
    "Bootstrap", "Estimate", "MetricStore", "compute_metrics", "decide",
    "ends_with_summary", "is_authoritative", "scorecard", "scorecard_markdown",
    "unigram_overlap", "uses_list", "validate_samples", "word_count", ]
