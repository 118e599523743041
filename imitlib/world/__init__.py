"""The offline miniature world: knowledge base, corpus, tokenizer, base LMs, teacher, task families.

``build_world(cfg, seed)`` builds (or reuses) one seed's cached world; ``load_world(cfg, seed)``
reads it; ``style_markers(text)`` detects the teacher's chat style in any response.
"""

from imitlib.world.stage import TEACHER, World, build_world, load_world, make_kb, make_tasks, world_stage
from imitlib.world.style import has_teacher_style, style_markers
from imitlib.world.tasks import FAMILIES, SCORED_FAMILIES, fact_answer_correct, make_items

__all__ = [
    "TEACHER", "World", "build_world", "load_world", "make_kb", "make_tasks", "world_stage",
    "style_markers", "has_teacher_style", "FAMILIES", "SCORED_FAMILIES", "fact_answer_correct", "make_items",
]
