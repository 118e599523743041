"""The local backend: a HF model on disk answering with batched, length-sorted generation."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

from imitlib.generation import generate_chat
from imitlib.teacher.cache import Sampling


class LocalTeacher:
    """A model folder loaded in this process (also the engine behind the API server)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 16,
                 model_name: str | None = None, dtype: str = "float32") -> None:
        from imitlib.models import load_model, pick_device, torch_dtype

        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.model, self.tokenizer = load_model(self.model_dir, device=pick_device(device), dtype=torch_dtype(dtype))
        self.batch_size = batch_size
        self.model_id = model_name or self.model_dir.name
        self._lock = threading.Lock()
        # the longest prompt + answer the model can hold (None when the config does not say)
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer(
        self,
        conversations: Sequence[list[dict[str, str]]],
        sampling: Sampling,
        on_answer: Callable[[int, str], None] | None = None,
        progress: bool = False,
        streamer=None,
    ) -> list[str]:
        """Answer conversations in batches of ``batch_size`` sorted by prompt length.

        ``on_answer(index, text)`` is called as each batch finishes (so a cache can store answers
        before the whole collection ends). The batches are those one ``generate_chat`` call over
        all conversations would form, so greedy answers do not depend on how the work is split.
        ``streamer`` (one conversation only) receives its tokens as they are generated.
        """
        from tqdm.auto import tqdm

        lengths = [len(self.render(c)) for c in conversations]
        order = sorted(range(len(conversations)), key=lambda i: lengths[i])
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        answers: list[str] = [""] * len(conversations)
        bar = tqdm(total=len(conversations), desc="teacher (local)", disable=not progress, leave=False)
        for chunk_index, chunk in enumerate(chunks):
            with self._lock:
                texts = generate_chat(
                    self.model, self.tokenizer, [conversations[i] for i in chunk],
                    max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                    top_p=sampling.top_p, seed=sampling.seed * 7919 + chunk_index, batch_size=len(chunk),
                    streamer=streamer,
                )
            for index, text in zip(chunk, texts):
                answers[index] = text
                if on_answer is not None:
                    on_answer(index, text)
            bar.update(len(chunk))
        bar.close()
        return answers
