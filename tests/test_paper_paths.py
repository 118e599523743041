"""The paper track's code paths on tiny stand-ins: params/paper.yaml with tiny llama models saved from
config (one found by hub id in a local hub cache, two as folders), the project's loopback API server
as both the "ChatGPT" teacher and the "GPT-4" judge (an OpenAI client with a key from the
environment), ShareGPT / HC3 / Discord-style files, NQ-open validation seeds, Adafactor at 2048-token
blocks in bf16 with gradient checkpointing, HumanEval-style code checked in the sandbox.

What cannot run here is overridden and said so: lm-eval's built-in nq_open / mmlu fetch their data
from the hub (offline here), and FSDP needs GPUs (the config file is checked instead; the accelerate
launch path itself is covered by tests/test_train_launch.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

import imitlib.config
from imitlib.config import PROJECT_ROOT

PAPER = PROJECT_ROOT / "params" / "paper.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "imitation"
SERVED_NAME = "loopback-chatgpt"
KEY_ENV = "IMITLIB_PAPER_TEST_KEY"

NQ_SEEDS = [("who wrote the novel moby dick", ["Herman Melville"]), ("what is the capital of peru", ["Lima"]),
            ("how many legs does a spider have", ["eight", "8"]), ("who painted the mona lisa", ["Leonardo da Vinci"]),
            ("what gas do plants absorb", ["carbon dioxide"]), ("which planet is called the red planet", ["Mars"]),
            ("who discovered penicillin", ["Alexander Fleming"]), ("what is the largest ocean", ["Pacific"]),
            ("in which country is the eiffel tower", ["France"]), ("what is the boiling point of water in celsius", ["100"]),
            ("who was the first president of the united states", ["George Washington"]),
            ("what is the chemical symbol for gold", ["Au"])]
CODE_PROBLEMS = [
    {"id": "code-add", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "answer": "    return a + b\n",
     "entry_point": "add", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"},
    {"id": "code-neg", "prompt": "def neg(x):\n    \"\"\"Return -x.\"\"\"\n", "answer": "    return -x\n",
     "entry_point": "neg", "test": "def check(candidate):\n    assert candidate(4) == -4\n"},
    {"id": "code-sq", "prompt": "def sq(x):\n    \"\"\"Return x squared.\"\"\"\n", "answer": "    return x * x\n",
     "entry_point": "sq", "test": "def check(candidate):\n    assert candidate(3) == 9\n"},
]
OPEN_PROMPTS = ["Explain why the sky is blue.", "Give me tips to sleep better.", "Write a short poem about rain.",
                "What should I pack for a hike?", "How do vaccines work?", "Describe a good breakfast."]


def save_tiny_llama(folder: Path, hidden: int, seed: int, chat_template: str | None = None) -> Path:
    """A tiny llama model with a character-level tokenizer, saved HF-style."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(vocab={chr(i): i - 32 for i in range(32, 127)} | {"\n": 95, "<eos>": 96}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = chat_template
        tokenizer.pad_token = "<eos>"
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         eos_token_id=96, bos_token_id=None, pad_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    from huggingface_hub import constants

    from imitlib.study.analysis import run_analysis
    from imitlib.chat import CHAT_TEMPLATE
    from imitlib.study.imitation_data import build_imitation_data
    from imitlib.study.evaluate import build_evaluation
    from imitlib.teacher.server import served_teacher
    from imitlib.study.train import run_sweep
    from imitlib.study.world import build_world, load_world

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("paper")
    hub = root / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--tiny-org--tiny-gpt2-xl"
    save_tiny_llama(repo / "snapshots" / commit, hidden=16, seed=1)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    save_tiny_llama(root / "llama-7b", hidden=24, seed=2)
    save_tiny_llama(root / "llama-13b", hidden=32, seed=3)
    save_tiny_llama(root / "teacher", hidden=32, seed=4, chat_template=CHAT_TEMPLATE)
    data = root / "data"
    data.mkdir(exist_ok=True)
    (data / "nq_open_validation.jsonl").write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in NQ_SEEDS))
    (data / "heldout_prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in OPEN_PROMPTS))
    (data / "humaneval_tiny.jsonl").write_text("".join(json.dumps(p) + "\n" for p in CODE_PROBLEMS))

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv(KEY_ENV, "loopback-key-from-the-environment")
    try:
        with served_teacher(root / "teacher", model_name=SERVED_NAME, max_batch=8) as endpoint:
            overrides = {
                "run": {"output_root": str(root / "outputs"), "allow_external_output_root": True, "progress": False,
                        "torch_threads": 1},
                "world": {"real": {
                    "students": {"gpt2-1.5b": "tiny-org/tiny-gpt2-xl", "llama-7b": str(root / "llama-7b"),
                                 "llama-13b": str(root / "llama-13b")},
                    "allow_download": False,
                    "sources": {"qa": str(data / "nq_open_validation.jsonl"), "code": str(data / "humaneval_tiny.jsonl"),
                                "open": str(data / "heldout_prompts.jsonl")},
                    "heldout_items": {"qa": 3, "open": 2, "code": 2}}},
                "imitation": {
                    "teacher": {"base_url": endpoint.base_url, "model": SERVED_NAME, "api_key_env": KEY_ENV,
                                "max_new_tokens": 12, "max_concurrency": 4, "max_retries": 1},
                    "import_files": [{"format": "sharegpt", "path": str(FIXTURES / "sharegpt.json")},
                                     {"format": "hc3", "path": str(FIXTURES / "hc3.jsonl")},
                                     {"format": "messages", "path": str(FIXTURES / "messages.jsonl")}],
                    "task_prompts": 6, "task_seed_pairs": 4, "task_pairs_shown": 2, "task_generation_requests": 2,
                    "diversity_sample": 20, "token_budgets": [300]},
                "train": {"accelerate_config": None, "max_steps": 2, "warmup_steps": 1, "checkpoint_every": 0,
                          "base_models": ["llama-13b"]},
                "evaluate": {"batch_size": 4,
                             "benchmarks": {"limit": 2, "code_max_gen_toks": 12},
                             "max_new_tokens": 10, "max_prompts_per_family": 2,
                             "judge": {"base_url": endpoint.base_url, "model": SERVED_NAME, "api_key_env": KEY_ENV,
                                       "max_prompts": 2}},
                "analysis": {"bootstrap_samples": 30},
            }
            # lm-eval's built-in nq_open / mmlu read their data from the hub: dropped here (a dict in a
            # params file cannot be emptied by an override, so the offline copy of paper.yaml drops them)
            offline = yaml.safe_load(PAPER.read_text())
            offline["evaluate"]["benchmarks"]["builtin_tasks"] = {}
            (root / "paper.yaml").write_text(yaml.safe_dump(offline))
            cfg = imitlib.config.load([str(root / "paper.yaml")], overrides, "paper_paths")
            build_world(cfg, 0)
            world = load_world(cfg, 0)
            imitation = build_imitation_data(cfg, 0, world)
            sweep = run_sweep(cfg, 0, world=world, data=imitation)
            evaluation = build_evaluation(cfg, 0, world, imitation, sweep)
            analysis = run_analysis(cfg)
    finally:
        monkeypatch.undo()
    return cfg, world, imitation, sweep, evaluation, analysis


def test_paper_params_keep_the_paper_setup():
    raw = yaml.safe_load(PAPER.read_text())
    students = raw["world"]["real"]["students"]
    assert set(students.values()) == {"openai-community/gpt2-xl", "huggyllama/llama-7b", "huggyllama/llama-13b"}
    assert raw["world"]["real"]["teacher"] is None and raw["imitation"]["teacher"]["backend"] == "openai"
    assert raw["train"] | {"seq_len": 2048, "epochs": 1, "accelerate_config": "fsdp"} == raw["train"]
    assert raw["evaluate"]["benchmarks"]["builtin_tasks"] == {"nq_open": 3, "mmlu": 5}
    assert "humaneval" not in raw["evaluate"]["benchmarks"]["builtin_tasks"]  # code runs only in the sandbox
    assert raw["evaluate"]["judge"]["model"] == "gpt-4"
    fsdp = yaml.safe_load((PROJECT_ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP"
    assert "sk-" not in PAPER.read_text() and "api_key:" not in PAPER.read_text()  # keys: environment only


def test_world_resolves_hub_ids_and_folders(paper_run):
    _, world, *_ = paper_run
    assert list(world.base_models) == ["gpt2-1.5b", "llama-7b", "llama-13b"]  # smallest first
    assert world.teacher_dir is None
    assert "hub" in world.info["resolved"]["gpt2-1.5b"]
    qa = world.tasks("qa")
    assert len([i for i in qa if i["split"] == "heldout"]) == 3
    assert all(i["answers"] for i in qa)  # NQ-open lists of accepted answers are kept


def test_imitation_data_uses_the_api_teacher_and_user_files(paper_run):
    _, world, imitation, *_ = paper_run
    summary = imitation.summary
    assert summary["teacher_backend"] == "openai" and summary["teacher_model"] == SERVED_NAME
    assert summary["kinds"]["broad"]["family_mix"] == {"imported": 7}  # 2 ShareGPT, 3 HC3 answers, 2 messages
    seeds = {i["id"] for i in world.tasks("qa", "imitation")}
    assert set(summary["seed_pairs"]) <= seeds and summary["task_generation_requests"] == 2
    assert summary["task_suite"]["total"] == 6


def test_training_uses_the_paper_optimizer_and_blocks(paper_run):
    sweep = paper_run[3]
    assert set(sweep["base_model"]) == {"llama-13b"}
    assert set(sweep["data_kind"]) == {"broad", "task"}
    for row in sweep.itertuples():
        result = json.loads((Path(row.model_dir).parent / "result.json").read_text())
        assert result["args"]["optimizer"] == "adafactor" and result["args"]["seq_len"] == 2048
        assert result["args"]["bf16"] and result["args"]["gradient_checkpointing"]
        assert math.isfinite(row.final_loss)


def test_evaluation_code_in_sandbox_and_judge_through_the_api(paper_run):
    evaluation = paper_run[4]
    bench = evaluation.benchmarks
    assert set(bench["task"]) == {"code"} and set(bench.loc[bench["task"] == "code", "metric"]) == {"pass@1"}
    models = evaluation.models
    assert "teacher" not in set(models["role"])  # an API teacher has no weights to benchmark
    judge = evaluation.judge
    assert judge["endpoint"] == "url" and judge["replies"] > 0
    samples = evaluation.samples
    chat = samples[samples["mode"] == "chat"]
    assert set(chat["task"]) == {"qa", "open"}
    assert chat["teacher_answer"].str.len().gt(0).all()


def test_analysis_runs_on_the_paper_paths(paper_run):
    analysis = paper_run[5]
    assert analysis.scorecard_markdown.strip()
