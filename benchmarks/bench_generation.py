"""Teacher generation throughput: batched, length-sorted, KV-cached vs a per-prompt ``generate`` loop.

Usage: python benchmarks/bench_generation.py MODEL_DIR [--prompts 64] [--new-tokens 48]
Target: ≥ 5× the per-prompt loop in generated tokens/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import compare  # noqa: E402

from imitlib.generation import generate_texts  # noqa: E402
from imitlib.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(args.model_dir)
    subjects = ["the weather", "a small city", "numbers", "a long trip", "music", "an old friend", "work", "books"]
    conversations = [[{"role": "user", "content": f"Tell me something about {subjects[i % len(subjects)]} {i}"}]
                     for i in range(args.prompts)]
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]

    def count_new(texts: list[str]) -> float:
        return float(sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts))

    def batched() -> float:
        return count_new(generate_texts(model, tokenizer, prompts, max_new_tokens=args.new_tokens,
                                        batch_size=args.batch_size))

    @torch.no_grad()
    def loop() -> float:
        texts = []
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            texts.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return count_new(texts)

    compare("teacher_generation", ("batched generate_texts", batched), ("per-prompt generate loop", loop),
            units="generated tokens/s", target_ratio=5.0, repeats=args.repeats,
            notes=f"{args.prompts} prompts, {args.new_tokens} new tokens, batch {args.batch_size}, model {args.model_dir}")


if __name__ == "__main__":
    main()
