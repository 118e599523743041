"""Deterministic stand-ins for when the default study has not been built: chat conversations and a
small Llama built from a config (word-level tokenizer with the study's chat template)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green blue old new city year "
         "born lived worked as a the of in and was is what where when who tell me about sure here").split()


def synthetic_conversations(count: int, seed: int = 0, user_words: tuple[int, int] = (4, 16),
                            answer_words: tuple[int, int] = (8, 70)) -> list[list[dict[str, str]]]:
    """``count`` one-turn conversations of random words, lengths uniform in the given ranges."""
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [[{"role": "user", "content": text(*user_words)}, {"role": "assistant", "content": text(*answer_words)}]
            for _ in range(count)]


def synthetic_model(folder: Path, hidden_size: int = 128, layers: int = 4, heads: int = 4,
                    intermediate_size: int = 384, seed: int = 0) -> Path:
    """Save a randomly initialised Llama and its word-level tokenizer (chat template set) to ``folder``.

    The defaults are the default study's ``base-m`` shape.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imitlib.world.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([" ".join(WORDS)])
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    folder = Path(folder)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
