"""The padding-free HF baseline of the training benchmark isolates examples on a CPU.

``benchmarks/bench_training.py`` compares imitlib's training loop with ``Trainer`` +
``DataCollatorWithFlattening`` (every step's conversations concatenated into one row, position ids
restarting per example, no attention mask). That baseline is only a fair anchor if it trains
correctly here: attention must not cross example boundaries with the CPU's attention kernels. These
tests compute the loss of a flattened batch and compare it with each example run on its own.

Measured with transformers 5.24: the block-diagonal mask is only built when the forward pass has no
KV cache. With the config's default ``use_cache=True`` (what a stock ``Trainer`` run has) a cache is
created even in training, the packed-sequence check is skipped and attention crosses examples. The
benchmark therefore sets ``model.config.use_cache = False`` on its flattening side.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DataCollatorWithFlattening, LlamaConfig, LlamaForCausalLM

IGNORE = -100


def _model(attn_implementation: str, use_cache: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation=attn_implementation, use_cache=use_cache)
    return LlamaForCausalLM(config).train()


def _examples() -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    examples = []
    for length, prompt in ((9, 3), (17, 5), (6, 2), (23, 8)):
        ids = torch.randint(3, 61, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]})
    return examples


def _separate_token_losses(model, examples) -> torch.Tensor:
    """Per supervised token cross-entropy, each example in its own forward pass."""
    losses = []
    for example in examples:
        ids = torch.tensor([example["input_ids"]])
        labels = torch.tensor([[IGNORE] + example["labels"][1:]])
        logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        keep = target != IGNORE
        losses.append(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="none"))
    return torch.cat(losses)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_flattened_batch_equals_separate_examples(attn_implementation):
    model = _model(attn_implementation)
    examples = _examples()
    batch = DataCollatorWithFlattening()(examples)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        flattened = model(**batch).loss
        separate = _separate_token_losses(model, examples).mean()
    assert torch.allclose(flattened, separate, rtol=1e-5, atol=1e-6), (float(flattened), float(separate))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_with_the_default_kv_cache_examples_leak(attn_implementation):
    """A stock Trainer keeps ``use_cache=True``: the flattened batch is then NOT isolated on a CPU."""
    model = _model(attn_implementation, use_cache=True)
    examples = _examples()
    batch = DataCollatorWithFlattening()(examples)
    with torch.no_grad():
        leaked = model(**batch).loss
        separate = _separate_token_losses(model, examples).mean()
    assert not torch.allclose(leaked, separate, rtol=1e-3, atol=1e-4)


def test_without_restarting_positions_examples_leak():
    """The check above can fail: the same row with one running position sequence is not isolated."""
    model = _model("sdpa")
    examples = _examples()
    batch = DataCollatorWithFlattening(return_position_ids=False)(examples)
    with torch.no_grad():
        leaked = model(**batch).loss
        separate = _separate_token_losses(model, examples).mean()
    assert not torch.allclose(leaked, separate, rtol=1e-3, atol=1e-4)
