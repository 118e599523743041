"""Sub-commands beyond the pipeline: ``serve`` (the OpenAI-compatible teacher server)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p_serve = sub.add_parser("serve", help="serve a local HF model through an OpenAI-compatible API")
    p_serve.add_argument("model_dir", help="folder of a model saved with save_pretrained")
    p_serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--model-name", default=None, help="name reported by /v1/models")
    p_serve.add_argument("--max-batch", type=int, default=16, help="most concurrent requests answered in one batch")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from imitlib.teacher.server import serve

        serve(args.model_dir, host=args.host, port=args.port, model_name=args.model_name, max_batch=args.max_batch)
        return 0
    raise SystemExit(f"unknown command {args.command}")
