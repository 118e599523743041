"""Sub-commands beyond the pipeline: ``serve`` (the OpenAI-compatible teacher server) and ``plan``
(what a params file will cost)."""

from __future__ import annotations

import argparse

from imitlib.config import load, overrides_from_cli
from imitlib.plan import make_plan


def register(sub: argparse._SubParsersAction) -> None:
    p_serve = sub.add_parser("serve", help="serve a local HF model through an OpenAI-compatible API")
    p_serve.add_argument("model_dir", help="folder of a model saved with save_pretrained")
    p_serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--model-name", default=None, help="name reported by /v1/models")
    p_serve.add_argument("--max-batch", type=int, default=16, help="most concurrent requests answered in one batch")
    p_serve.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                         help="weights' dtype while serving (bfloat16: about 3x faster on a recent CPU)")
    p_plan = sub.add_parser("plan", help="list the finetuning runs, training compute and API calls a params file implies")
    p_plan.add_argument("params", nargs="+", help="params files, later ones override earlier ones")
    p_plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key (dotted path), e.g. --set train.epochs=2")
    p_plan.add_argument("--gpus", type=int, default=1, help="GPUs for the GPU-hours estimate (default 1)")
    p_plan.add_argument("--gpu-tflops", type=float, default=None,
                        help="peak dense TFLOP/s of one GPU in the training dtype (e.g. 312 for an A100 in bf16)")
    p_plan.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (default 0.4)")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from imitlib.teacher.server import serve

        serve(args.model_dir, host=args.host, port=args.port, model_name=args.model_name, max_batch=args.max_batch,
              dtype=args.dtype)
        return 0
    if args.command == "plan":
        cfg = load(args.params, overrides_from_cli(args.overrides), check_files=False)
        print(make_plan(cfg, gpus=args.gpus, gpu_tflops=args.gpu_tflops, mfu=args.mfu).markdown(), end="")
        return 0
    raise SystemExit(f"unknown command {args.command}")
