"""Real-track pieces that need no model: item splits, user item files, open-question parsing, the
sandboxed code benchmark's task files and hook, and the params checks of ``world.real``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import imitlib.config
from imitlib.config import ConfigError
from imitlib.data.suites import item_prompt, parse_open_questions
from imitlib.evaluate.benchmarks import CODE_HOOK_MODULE, write_world_tasks
from imitlib.real.code_eval import make_process_results
from imitlib.real.data import PackageDataError, jsonl_items
from imitlib.real.world import split_items

ADD = {"id": "c-add", "family": "code", "prompt": "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
       "answer": "    return a + b\n", "entry_point": "add", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}


def _items(family: str, groups: int, per_group: int) -> list[dict]:
    return [{"id": f"{family}-{g}-{i}", "family": family, "group": f"g{g}", "prompt": f"q {g} {i}?", "answer": "a"}
            for g in range(groups) for i in range(per_group)]


def test_split_keeps_groups_together_caps_and_is_seeded():
    items = {"qa": _items("qa", 40, 3), "open": [{**it, "id": f"open-{it['group']}"} for it in _items("open", 40, 1)]}
    first = split_items(items, 0.5, seed=3, heldout_caps={"qa": 10}, imitation_caps={"open": 5})
    assert first == split_items(items, 0.5, seed=3, heldout_caps={"qa": 10}, imitation_caps={"open": 5})
    assert first != split_items(items, 0.5, seed=4, heldout_caps={"qa": 10}, imitation_caps={"open": 5})
    assert sum(i["split"] == "heldout" for i in first["qa"]) == 10
    assert sum(i["split"] == "imitation" for i in first["open"]) == 5
    side = {}
    for family in first.values():
        for item in family:
            assert side.setdefault(item["group"], item["split"]) == item["split"], item["group"]


def test_jsonl_items_read_nq_open_and_name_bad_lines(tmp_path):
    good = tmp_path / "nq.jsonl"
    good.write_text(json.dumps({"question": "who wrote hamlet", "answer": ["Shakespeare", "William Shakespeare"]}) + "\n")
    [item] = jsonl_items(good, "qa")
    assert item["prompt"] == "who wrote hamlet" and item["answer"] == "Shakespeare"
    assert item["answers"] == ["Shakespeare", "William Shakespeare"] and item["group"] == item["id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "ok?"}) + "\n{not json\n")
    with pytest.raises(PackageDataError, match=r"bad.jsonl:2: not JSON"):
        jsonl_items(bad, "qa")
    mc = tmp_path / "mc.jsonl"
    mc.write_text(json.dumps({"prompt": "pick", "choices": ["a", "b"], "gold": 5}) + "\n")
    with pytest.raises(PackageDataError, match=r"mc.jsonl:1: a multiple-choice item needs"):
        jsonl_items(mc, "mc")
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"prompt": "def f():\n"}) + "\n")
    with pytest.raises(PackageDataError, match=r"code.jsonl:1: a code item needs 'test' and 'entry_point'"):
        jsonl_items(code, "code")


def test_open_questions_accept_numbered_lines_and_skip_excluded():
    text = ("1. What is the capital of Peru?\n2. What is the capital of Peru?\n3) Who built the Eiffel Tower?\n"
            "Q: When did Rome fall? A: 476\nno question here\n4. Is this?")
    found = parse_open_questions(text, excluded=["Who built the Eiffel tower?"])
    assert found == ["What is the capital of Peru?", "When did Rome fall?"]


def test_code_items_are_asked_as_chat_requests():
    assert item_prompt(ADD).startswith("Complete this Python function.") and "def add" in item_prompt(ADD)


def test_code_task_runs_completions_in_the_sandbox(tmp_path):
    names = write_world_tasks({"code": ([ADD], [])}, tmp_path, {"code": 0}, max_gen_toks=8)
    assert names == ["imitlib_code"]
    text = (tmp_path / "imitlib_code.yaml").read_text()
    assert text.rstrip().endswith(f"process_results: !function {CODE_HOOK_MODULE}.process_results")
    config = yaml.safe_load(text.replace("!function", ""))
    assert config["generation_kwargs"]["max_gen_toks"] == 256  # the code cap, not the short-answer cap
    row = json.loads((tmp_path / "code_test.jsonl").read_text())
    assert row["test"] == ADD["test"] and row["entry_point"] == "add"
    hook = make_process_results(timeout_s=5.0, cpu_s=5, memory_mb=256)
    assert hook(row, ["    return a + b\n"]) == {"pass@1": 1.0}
    assert hook(row, ["    return a - b\n"]) == {"pass@1": 0.0}
    assert hook(row, ["    import socket; socket.socket().connect(('1.1.1.1', 80)); return a + b\n"]) == {"pass@1": 0.0}
    with pytest.raises(ValueError, match="code item"):
        write_world_tasks({"code": ([{**ADD, "test": None}], [])}, tmp_path / "bad", {"code": 0})


def test_real_world_params_are_checked():
    with pytest.raises(ConfigError, match="world.real.students is empty"):
        imitlib.config.load([], {"world.kind": "real"})
    with pytest.raises(ConfigError, match="unknown real-track task families"):
        imitlib.config.load([], {"world": {"kind": "real", "real": {"students": {"s": "x/y"}, "sources": {"bio": "x.jsonl"}}}})
    with pytest.raises(ConfigError, match="plain folder names"):
        imitlib.config.load([], {"world": {"kind": "real", "real": {"students": {"teacher": "x/y"}}}})
    cfg = imitlib.config.load([str(Path(imitlib.config.PROJECT_ROOT) / "params" / "real_small.yaml")])
    assert cfg.world.kind == "real" and cfg.train.method == "lora" and "code" in cfg.evaluate.benchmarks.families
