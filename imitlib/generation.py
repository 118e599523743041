"""Batched generation with the KV cache: prompts sorted by length, left padding, seeded sampling."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm


def _prepare_tokenizer(tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    stop: Sequence[str] = (),
    progress: bool = False,
    desc: str = "generate",
    streamer=None,
) -> list[str]:
    """Continue each prompt (already formatted text); returns only the new text, in input order.

    Greedy when ``temperature == 0``. Sampling is seeded per batch: the same prompts with the same
    batch size and seed give the same texts. Text after any ``stop`` string is cut. ``streamer``
    (a ``transformers`` streamer, one prompt only) receives the new tokens as they are generated.
    """
    if streamer is not None and len(prompts) != 1:
        raise ValueError(f"a streamer follows one prompt, got {len(prompts)}")
    _prepare_tokenizer(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch_index, batch in enumerate(tqdm(batches, desc=desc, disable=not progress, leave=False)):
        texts = [prompts[i] for i in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, use_cache=True, streamer=streamer)
        if temperature > 0:
            torch.manual_seed(seed * 100003 + batch_index)
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False)
        out = model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        for row, index in enumerate(batch):
            text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
            for s in stop:
                if s and s in text:
                    text = text[: text.index(s)]
            results[index] = text.strip()
    return results


def generate_chat(
    model,
    tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    **kwargs,
) -> list[str]:
    """Answer each conversation (list of messages ending with a user turn) as the assistant."""
    prompts = [
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    return generate_texts(model, tokenizer, prompts, **kwargs)
