"""Imitation data: prompt suites, importers, token budgets, and the ``02_imitation_data`` stage."""

from imitlib.data.budgets import conversation_tokens, nested_budgets
from imitlib.data.diversity import nearest_neighbour_bleu
from imitlib.data.importers import (ImportFormatError, conversations_dataset, import_alpaca, import_conversations,
                                    import_hc3, import_messages, import_sharegpt)
from imitlib.data.exposure import STRATA, attach_exposure, exposure_stratum, exposure_table
from imitlib.data.stage import (ImitationData, budget_table, build_imitation_data, cleaning_table, conversation_table,
                                diversity_table, exposure_strata_table, imitation_stage, load_imitation_data, mix_table,
                                samples_markdown, task_generation_table, teacher_cache_dir)
from imitlib.data.suites import broad_suite, eval_suite, natural_sample, parse_generated_questions, task_suite

__all__ = [
    "ImitationData", "ImportFormatError", "budget_table", "cleaning_table", "conversation_table", "diversity_table",
    "mix_table", "samples_markdown", "broad_suite", "build_imitation_data", "conversation_tokens",
    "conversations_dataset", "eval_suite", "import_alpaca", "import_conversations", "import_hc3", "import_messages",
    "import_sharegpt", "imitation_stage", "load_imitation_data", "nearest_neighbour_bleu", "nested_budgets",
    "parse_generated_questions", "task_suite", "teacher_cache_dir", "STRATA", "attach_exposure", "exposure_stratum",
    "exposure_table", "exposure_strata_table", "natural_sample", "task_generation_table",
]
