"""Token budgets: nested subsets of conversations counted with the student's tokenizer."""

from __future__ import annotations

import random
from typing import Any, Sequence


def conversation_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Student tokens of the whole conversation, rendered with the student's chat template."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        from imitlib.chat import render

        text = render(messages, eos_token=tokenizer.eos_token or "", bos_token=tokenizer.bos_token or "")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def nested_budgets(tokens: Sequence[int], budgets: Sequence[int], seed: int) -> tuple[list[list[int]], dict[int, dict]]:
    """Assign conversations to nested budgets.

    The conversations are put in one seeded random order; budget ``b`` holds the longest prefix of
    that order whose tokens add up to at most ``b``. A smaller budget's prefix is a prefix of every
    larger one's, so the subsets are nested.

    Args:
        tokens: tokens of each conversation.
        budgets: token budgets (any order).
        seed: seed of the order.

    Returns:
        (for each conversation the sorted budgets that contain it,
         {budget: {"conversations", "tokens", "filled"}}) where ``filled`` says the data had at
        least ``budget`` tokens in all (so the prefix is the budget, not everything there was).
    """
    order = list(range(len(tokens)))
    random.Random(seed).shuffle(order)
    total = sum(tokens)
    membership: list[list[int]] = [[] for _ in tokens]
    summary: dict[int, dict] = {}
    for budget in sorted(budgets):
        used, count = 0, 0
        for index in order:
            if used + tokens[index] > budget:
                break
            used += tokens[index]
            count += 1
            membership[index].append(budget)
        summary[budget] = {"conversations": count, "tokens": used, "filled": total >= budget}
    return membership, summary
