"""Training: the loop (accelerate; full or LoRA; packing; resume) and chat tokenization (the sweep, the
``03_train`` stage, is :mod:`imitlib.study.train`).

``from imitlib.train import TrainArgs, TrainResult, train_causal_lm, tokenize_conversation``.
"""

from imitlib.train.loop import (
    IGNORE_INDEX,
    TrainArgs,
    TrainResult,
    evaluate_loss,
    latest_checkpoint,
    prepare_examples,
    train_causal_lm,
)
from imitlib.train.tokenize import (
    ChatMaskError,
    TokenizeReport,
    assistant_char_spans,
    tokenize_conversation,
    tokenize_conversations,
)

__all__ = [
    "IGNORE_INDEX", "TrainArgs", "TrainResult", "train_causal_lm", "evaluate_loss", "latest_checkpoint",
    "prepare_examples", "ChatMaskError", "TokenizeReport", "assistant_char_spans", "tokenize_conversation",
    "tokenize_conversations", ]
