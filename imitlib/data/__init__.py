"""Imitation data: prompt suites, importers, cleaning, token budgets, exposure labels (the tools of the
``02_imitation_data`` stage, :mod:`imitlib.study.imitation_data`)."""

from imitlib.data.budgets import conversation_tokens, nested_budgets
from imitlib.data.diversity import nearest_neighbour_bleu
from imitlib.data.importers import (ImportFormatError, conversations_dataset, import_alpaca, import_conversations,
                                    import_hc3, import_messages, import_sharegpt)
from imitlib.data.exposure import STRATA, attach_exposure, exposure_stratum, exposure_table
from imitlib.data.suites import broad_suite, eval_suite, natural_sample, parse_generated_questions, task_suite

__all__ = [
    "ImportFormatError", "broad_suite", "conversation_tokens",
    "conversations_dataset", "eval_suite", "import_alpaca", "import_conversations", "import_hc3", "import_messages",
    "import_sharegpt", "nearest_neighbour_bleu", "nested_budgets",
    "parse_generated_questions", "task_suite", "STRATA", "attach_exposure", "exposure_stratum",
    "exposure_table", "natural_sample", ]
