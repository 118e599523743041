"""Style vs factuality: metrics, bootstrap intervals, the paper's tables and the claims scorecard.

Entry point: :func:`run_analysis` (reads ``04_evaluate`` results, writes tables and the scorecard).
"""

from imitlib.analysis.claims import scorecard, scorecard_markdown
from imitlib.analysis.metrics import MetricStore, compute_metrics, validate_samples
from imitlib.analysis.report import AnalysisResult, analyse, load_results, run_analysis, write_outputs
from imitlib.analysis.stats import Bootstrap, Estimate, decide
from imitlib.analysis.style import ends_with_summary, is_authoritative, unigram_overlap, uses_list, word_count

__all__ = [
    "AnalysisResult", "Bootstrap", "Estimate", "MetricStore", "analyse", "compute_metrics", "decide",
    "ends_with_summary", "is_authoritative", "load_results", "run_analysis", "scorecard", "scorecard_markdown",
    "unigram_overlap", "uses_list", "validate_samples", "word_count", "write_outputs",
]
