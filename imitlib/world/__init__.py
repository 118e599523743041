"""The offline miniature world: knowledge base, corpus, tokenizer, base LMs, teacher, task families.

The tools the ``01_world`` stage (:mod:`imitlib.study.world`: ``build_world``, ``load_world``) uses;
``style_markers(text)`` detects the teacher's chat style in any response.
"""

from imitlib.world.style import has_teacher_style, style_markers
from imitlib.world.tasks import FAMILIES, SCORED_FAMILIES, fact_answer_correct, make_items

__all__ = [
    "style_markers", "has_teacher_style", "FAMILIES", "SCORED_FAMILIES", "fact_answer_correct", "make_items",
]
