"""Imitation data: importers (good and malformed files), nested budgets, suites, diversity, the stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "imitation"
sys.path.insert(0, str(FIXTURES))
from tiny_world import HELDOUT_NAMES, IMITATION_NAMES, TinyWorld, build_tiny_world  # noqa: E402

from imitlib.data import (ImportFormatError, build_imitation_data, conversations_dataset,  # noqa: E402
                          import_conversations, imitation_stage, load_imitation_data, nearest_neighbour_bleu,
                          nested_budgets, parse_generated_questions, teacher_cache_dir)
from imitlib.teacher.cache import ResponseCache  # noqa: E402


# ---- importers ---------------------------------------------------------------------------------
def test_sharegpt_import():
    conversations = import_conversations(FIXTURES / "sharegpt.json", "sharegpt")
    assert [c["id"] for c in conversations] == ["sg-1", "sg-2"]
    assert conversations[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in conversations[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    dataset = conversations_dataset(conversations)
    assert dataset.column_names == ["id", "source", "messages"] and len(dataset) == 2


def test_alpaca_import():
    conversations = import_conversations(FIXTURES / "alpaca.json", "alpaca")
    assert conversations[1]["messages"] == [
        {"role": "user", "content": "Translate to French.\n\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert conversations[0]["messages"][0]["content"] == "Give three colours."


def test_hc3_import_one_conversation_per_chatgpt_answer():
    conversations = import_conversations(FIXTURES / "hc3.jsonl", "hc3")
    assert len(conversations) == 3
    assert conversations[2]["messages"] == [{"role": "user", "content": "What is a noun?"},
                                            {"role": "assistant", "content": "It is a word that names something."}]
    assert len({c["id"] for c in conversations}) == 3


def test_messages_import():
    conversations = import_conversations(FIXTURES / "messages.jsonl", "messages")
    assert conversations[0]["id"] == "m-1"
    assert conversations[1]["messages"][0]["role"] == "system"


@pytest.mark.parametrize("name, form, where, what", [
    ("sharegpt_bad_speaker.json", "sharegpt", "sharegpt_bad_speaker.json:9", "unknown speaker 'robot'"),
    ("sharegpt_truncated.json", "sharegpt", "sharegpt_truncated.json:3", "invalid JSON"),
    ("alpaca_missing_output.json", "alpaca", "alpaca_missing_output.json:4", "missing key 'output'"),
    ("hc3_bad_json.jsonl", "hc3", "hc3_bad_json.jsonl:3", "invalid JSON"),
    ("messages_wrong_order.jsonl", "messages", "messages_wrong_order.jsonl:3", "start with a user turn"),
    ("sharegpt.json", "alpaca", "sharegpt.json:2", "missing key 'instruction'"),
    ("alpaca.json", "hc3", "alpaca.json:1", "invalid JSON"),
])
def test_malformed_files_name_file_and_line(name, form, where, what):
    with pytest.raises(ImportFormatError) as error:
        import_conversations(FIXTURES / name, form)
    assert where in str(error.value) and what in str(error.value)


def test_import_rejects_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(ImportFormatError, match="file not found"):
        import_conversations(tmp_path / "nope.json", "sharegpt")
    with pytest.raises(ImportFormatError, match="unknown format"):
        import_conversations(FIXTURES / "sharegpt.json", "vicuna")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ImportFormatError, match="no conversations"):
        import_conversations(tmp_path / "empty.json", "sharegpt")


# ---- budgets, suites, diversity ----------------------------------------------------------------
def test_nested_budgets_are_nested_and_within_budget():
    tokens = [17, 40, 5, 33, 12, 60, 8, 25, 9, 30] * 5
    budgets = [50, 200, 800]
    membership, summary = nested_budgets(tokens, budgets, seed=3)
    sets = {b: {i for i, m in enumerate(membership) if b in m} for b in budgets}
    assert sets[50] < sets[200] < sets[800]
    for b in budgets:
        assert summary[b]["tokens"] == sum(tokens[i] for i in sets[b]) <= b
        assert summary[b]["filled"]
        assert summary[b]["tokens"] > b - max(tokens)  # a budget is not left half empty
    _, too_big = nested_budgets(tokens, [10_000], seed=3)
    assert not too_big[10_000]["filled"] and too_big[10_000]["conversations"] == len(tokens)
    assert nested_budgets(tokens, budgets, seed=3)[0] == membership
    assert nested_budgets(tokens, budgets, seed=4)[0] != membership


def test_generated_questions_are_parsed_and_validated():
    text = ("Q: What job did Alvor have? A: pilot\nQ: In what city was Garrow born? A: Oslo\n"
            "Q: What job did Alvor have? A: judge\nQ: Why? \nQ: What year was Brisk born? A: 1922\n"
            "Q: In what city was Fenna born? A: Lima")
    found = parse_generated_questions(text, set(IMITATION_NAMES), set(HELDOUT_NAMES),
                                      seen=["In what city was Fenna born?"])
    assert found == ["What job did Alvor have?", "What year was Brisk born?"]


def test_nearest_neighbour_bleu():
    same = ["what job did alvor have in the city"] * 5
    assert nearest_neighbour_bleu(same) == pytest.approx(100.0)
    varied = ["the cat sat on the warm mat today", "quantum fields obey gauge symmetry rules",
              "bake bread with flour water and salt", "rivers flow downhill toward the open sea"]
    assert nearest_neighbour_bleu(varied) < 10.0


# ---- the stage ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_tiny_world(tmp_path_factory.mktemp("tiny_world"))


def _cfg(tmp_path: Path, **overrides):
    from imitlib.config import load

    base = {"run.output_root": str(tmp_path), "run.progress": False, "run.device": "cpu",
            "imitation.teacher.backend": "local", "imitation.teacher.max_new_tokens": 12,
            "imitation.task_prompts": 12, "imitation.task_generation_requests": 3, "imitation.task_seed_pairs": 6,
            "imitation.task_pairs_shown": 3, "imitation.token_budgets": [60, 200, 600], "imitation.diversity_sample": 50}
    return load([], {**base, **overrides}, run_name="t")


def test_imitation_stage_builds_nested_budgets_and_teacher_eval(world, tmp_path):
    cfg = _cfg(tmp_path)
    data = build_imitation_data(cfg, 0, world)
    stage = imitation_stage(cfg, 0)
    assert stage.done and stage.name == "02_imitation_data/seed0" and data.path == stage.path
    ds = data.conversations
    for column in ("id", "kind", "family", "messages", "tokens", "budgets"):
        assert column in ds.column_names
    table = data.table()
    assert set(table["kind"]) == {"broad", "task"}
    assert set(table[table["kind"] == "task"]["family"]) == {"qa"}
    assert set(table[table["kind"] == "broad"]["family"]) == set(world.families)
    heldout = set(HELDOUT_NAMES)
    for row in ds:  # imitation prompts never mention held-out individuals
        assert not heldout & set(row["messages"][0]["content"].replace("?", " ").split())
    for kind in ("broad", "task"):
        sizes = [len(data.subset(kind, b)) for b in data.filled_budgets(kind)]
        assert sizes == sorted(sizes) and sizes[0] > 0
        ids = [set(data.subset(kind, b)["id"]) for b in data.filled_budgets(kind)]
        assert all(a <= b for a, b in zip(ids, ids[1:]))
        for b in data.filled_budgets(kind):
            assert sum(data.subset(kind, b)["tokens"]) <= b
    summary = data.summary
    task = summary["task_suite"]
    assert task["generated"] + task["fallback"] == task["total"] == 12
    assert task["fallback_share"] == pytest.approx(task["fallback"] / 12)
    assert 0 <= summary["kinds"]["broad"]["query_nn_bleu"] <= 100
    evaluation = data.teacher_eval()
    assert len(evaluation) == sum(len(world.tasks(f, "heldout")) for f in world.families)
    assert {"teacher_answer", "teacher_answer_2", "reference", "prompt"} <= set(evaluation.columns)
    assert (evaluation["teacher_answer"] != evaluation["teacher_answer_2"]).any()
    assert stage.manifest()["info"]["summary"]["token_budgets"] == [60, 200, 600]

    # cached: a second call reuses the stage; other budgets rebuild it from the response cache alone
    cache = ResponseCache(teacher_cache_dir(cfg, world.stage_hash))
    answers = len(cache)
    assert load_imitation_data(cfg, 0).summary == summary
    other = build_imitation_data(_cfg(tmp_path, **{"imitation.token_budgets": [100, 400]}), 0, world)
    assert other.path != data.path and len(ResponseCache(teacher_cache_dir(cfg, world.stage_hash))) == answers
    assert other.summary["kinds"]["broad"]["tokens"] == summary["kinds"]["broad"]["tokens"]


def test_imported_files_replace_the_broad_suite(world, tmp_path):
    files = [{"format": "sharegpt", "path": str(FIXTURES / "sharegpt.json")},
             {"format": "hc3", "path": str(FIXTURES / "hc3.jsonl")}]
    cfg = _cfg(tmp_path, **{"imitation.broad_source": "files", "imitation.import_files": files,
                            "imitation.token_budgets": [20, 5000]})
    data = build_imitation_data(cfg, 1, world)
    broad = data.conversations.filter(lambda r: r["kind"] == "broad")
    assert sorted(broad["source"]) == sorted(["sharegpt:sharegpt.json"] * 2 + ["hc3:hc3.jsonl"] * 3)
    assert data.summary["budgets"]["broad"]["5000"]["filled"] is False
    with pytest.raises(ValueError, match="not filled"):
        data.subset("broad", 5000)
