"""Load models and tokenizers saved HF-style (base folders, full finetunes, LoRA adapters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def load_tokenizer(path: str | Path):
    """Tokenizer of a model folder or of an adapter folder's base model."""
    from transformers import AutoTokenizer

    path = Path(path)
    if is_adapter(path) and not (path / "tokenizer_config.json").exists():
        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        return AutoTokenizer.from_pretrained(base)
    return AutoTokenizer.from_pretrained(str(path))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: Any = None, merge: bool = True):
    """Load a causal LM from a folder; a LoRA adapter folder loads its base and applies it.

    Args:
        path: folder saved with ``save_pretrained`` (full model or peft adapter).
        device: where to put the model.
        dtype: torch dtype (default float32 on cpu).
        merge: merge a LoRA adapter into the weights (faster generation).

    Returns:
        (model in eval mode, tokenizer)
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model folder not found: {path}")
    tokenizer = load_tokenizer(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if is_adapter(path):
        from peft import PeftModel

        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        model = PeftModel.from_pretrained(model, str(path))
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model.to(device)
    model.eval()
    return model, tokenizer


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
