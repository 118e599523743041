"""Models of the miniature world: Llama configs, pretraining on the corpus, teacher chat tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imitlib.settings.world import ModelSize, WorldSettings
from imitlib.world.corpus import CorpusSampler


def make_model(size: ModelSize, tokenizer, seed: int, max_positions: int = 1024):
    """A freshly initialised ``LlamaForCausalLM`` of the given size (sdpa attention, tied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, num_key_value_heads=size.heads,
        intermediate_size=size.intermediate_size, max_position_embeddings=max_positions,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def pretraining_examples(sampler: CorpusSampler, tokenizer, tokens: int, seq_len: int) -> list[dict[str, list[int]]]:
    """Documents from ``sampler``, each as ``<s> text </s>``, in one stream cut into ``seq_len`` rows.

    Returns ``tokens // seq_len`` examples with ``labels == input_ids``.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    while len(stream) < tokens:
        batch = sampler.documents(256)
        # the tokenizer's own call, unpadded: encoding through ``backend_tokenizer`` directly would keep the
        # padding a batched generation call left switched on, and fill the stream with pad tokens
        for ids in tokenizer(batch, add_special_tokens=False, padding=False, truncation=False)["input_ids"]:
            stream.append(bos)
            stream.extend(ids)
            stream.append(eos)
    rows = tokens // seq_len
    return [{"input_ids": stream[i * seq_len:(i + 1) * seq_len], "labels": stream[i * seq_len:(i + 1) * seq_len]}
            for i in range(rows)]


def pretrain_args(settings: WorldSettings, seed: int, lr: float | None = None):
    """TrainArgs of world pretraining (every row is already ``seq_len`` long, so no packing)."""
    from imitlib.train.loop import TrainArgs

    return TrainArgs(lr=lr if lr is not None else settings.pretrain_lr, epochs=1, batch_size=settings.pretrain_batch_size,
                     seq_len=settings.seq_len, warmup_steps=settings.warmup_steps, schedule="cosine",
                     optimizer="adamw", seed=seed, method="full", packing=False, log_every=5)


def chat_args(settings: WorldSettings, seed: int):
    """TrainArgs of the teacher's chat tuning (packed conversations, replayed pretraining rows)."""
    from imitlib.train.loop import TrainArgs

    return TrainArgs(lr=settings.teacher_chat_lr, epochs=settings.teacher_chat_epochs,
                     batch_size=settings.teacher_chat_batch_size, seq_len=settings.seq_len,
                     warmup_steps=settings.warmup_steps, schedule="cosine", optimizer="adamw", seed=seed,
                     method="full", packing=True, replay_every=max(1, settings.teacher_replay_every), log_every=5)


def save_model(model, tokenizer, path: Path) -> Path:
    """``save_pretrained`` the model and its tokenizer into one folder (AutoModel/AutoTokenizer load it)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def losses_record(result: Any) -> dict[str, Any]:
    """The loss curve and counters of a training run, JSON-ready."""
    return {"losses": [list(x) for x in result.losses], "replay_losses": [list(x) for x in result.replay_losses],
            "steps": result.steps, "tokens_seen": result.tokens_seen, "seconds": round(result.seconds, 2),
            "input_tokens_seen": result.input_tokens_seen}
