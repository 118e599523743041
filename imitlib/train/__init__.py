"""Training: the loop (accelerate; full or LoRA; packing; resume), chat tokenization, the sweep.

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
from imitlib.train.sweep import (load_sweep, loss_curve_figure, loss_curves, run_sweep, sweep_points, sweep_stage,
                                  train_args_from)
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
    "tokenize_conversations", "run_sweep", "load_sweep", "sweep_stage", "sweep_points", "loss_curves", "loss_curve_figure", "train_args_from",
]
