"""Paper-track cleaning of imported files (issue 19, item 4): HTML to markdown, dedup, non-English
removal, 2048-token-style blocks, bad records skipped and counted (or a strict stop), HC3 and
Discord through the same path. Every defect is on a line of the small files in fixtures/cleaning/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imitlib.data.cleaning import (clean_import_files, dedup_key, html_to_markdown, known_languages, language_of,
                                   looks_like_html, split_into_blocks)
from imitlib.data.importers import ImportFormatError, import_conversations, read_import_file

CLEANING = Path(__file__).parent / "fixtures" / "cleaning"
SHAREGPT, HC3, DISCORD = CLEANING / "sharegpt_raw.json", CLEANING / "hc3_raw.jsonl", CLEANING / "discord_raw.jsonl"
FILES = [(SHAREGPT, "sharegpt"), (HC3, "hc3"), (DISCORD, "discord")]
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "imitation"))


@pytest.fixture(scope="module")
def cleaned():
    return clean_import_files(FILES)


def test_every_bad_record_is_skipped_and_counted_with_file_and_line(cleaned):
    _, report = cleaned
    skipped = {(Path(p.file).name, p.line, p.reason) for p in report.skipped}
    assert skipped == {
        ("sharegpt_raw.json", 7, "unknown_role"),      # "from": "narrator"
        ("sharegpt_raw.json", 8, "missing_key"),       # a gpt turn without "value"
        ("sharegpt_raw.json", 10, "turn_order"),       # human, human
        ("hc3_raw.jsonl", 2, "invalid_json"),          # a line cut short
        ("hc3_raw.jsonl", 4, "no_answer"),             # chatgpt_answers: []
        ("hc3_raw.jsonl", 6, "wrong_type"),            # chatgpt_answers: "Four."
        ("discord_raw.jsonl", 6, "reply_to_missing"),  # a bot reply to message 999, not in the file
        ("discord_raw.jsonl", 7, "invalid_json"),
        ("discord_raw.jsonl", 8, "no_prompt"),         # a bot message replying to nobody
        ("discord_raw.jsonl", 11, "missing_key"),      # no author
    }
    assert [(f["records"], f["conversations"], f["bad_records"]) for f in report.files] == \
        [(10, 7, 3), (7, 5, 3), (13, 3, 4)]
    problem = next(p for p in report.skipped if p.reason == "unknown_role")
    assert str(problem) == f"{SHAREGPT}:7: turn 0: unknown speaker 'narrator'"


def test_dedup_language_and_html_steps_are_counted(cleaned):
    kept, report = cleaned
    assert report.read == 15 and report.kept == len(kept) == 8
    removed = {(Path(r.where).name, r.reason, r.detail.split(" as ")[0]) for r in report.removed}
    assert removed == {
        ("sharegpt_raw.json:4", "duplicate", "same first turn"),  # sg-dup: sg-plain's first question and answer
        ("hc3_raw.jsonl:3", "duplicate", "same first turn"),      # Italy, also in the ShareGPT file (as HTML there)
        ("sharegpt_raw.json:5", "language", "de"),
        ("sharegpt_raw.json:6", "language", "zh"),
        ("hc3_raw.jsonl:5", "language", "fr"),
        ("discord_raw.jsonl:13", "language", "de"),
        ("sharegpt_raw.json:9", "empty_after_html", "empty assistant message"),
    }
    italy = next(r for r in report.removed if r.where.endswith("hc3_raw.jsonl:3"))
    assert italy.detail == f"same first turn as {SHAREGPT}:11"  # the first occurrence is kept
    assert report.html_converted == 2  # sg-html and sg-italy (sg-empty-html is removed instead)
    assert report.counts() == {"duplicate": 2, "empty_after_html": 1, "invalid_json": 2, "language:de": 2,
                               "language:fr": 1, "language:zh": 1, "missing_key": 2, "no_answer": 1, "no_prompt": 1,
                               "reply_to_missing": 1, "turn_order": 1, "unknown_role": 1, "wrong_type": 1}
    assert [c["id"] for c in kept] == ["sg-html", "sg-plain", "sg-italy", "0-0", "0-1", "6-0",
                                       "discord-104", "discord-110"]
    table = report.table()
    assert table["count"].sum() == len(report.skipped) + len(report.removed) == 17
    assert json.loads(json.dumps(report.to_dict()))["counts"] == report.counts()


def test_html_becomes_markdown_as_fastchat_cleans_it(cleaned):
    kept, _ = cleaned
    answer = next(c for c in kept if c["id"] == "sg-html")["messages"][1]["content"]
    assert answer == ("Use the built-in `sorted()` function, which returns a new sorted list:\n\n"
                      "```python\nnumbers = [3, 1, 2]\nprint(sorted(numbers))\n```\n\n"
                      "To sort the list in place, call `numbers.sort()` instead; my_list_name is just a variable.")
    assert next(c for c in kept if c["id"] == "sg-italy")["messages"][1]["content"] == "The capital of Italy is **Rome**."
    assert html_to_markdown("2 / 2<p>Copy12 chars / 3 words</p><p>Hi</p>") == "Hi"
    assert looks_like_html("<p>x</p>") and looks_like_html('<code class="language-py">') and not looks_like_html(
        "if a < b and b > c: print('<3')")
    plain = "snake_case and 2 * 3 stay as they are"
    kept_plain, report = clean_import_files([(SHAREGPT, "sharegpt")], html=False)
    assert report.html_converted == 0 and "<div" in next(c for c in kept_plain if c["id"] == "sg-html")["messages"][1]["content"]
    assert not looks_like_html(plain)


def test_discord_threads_become_conversations(cleaned):
    kept, _ = cleaned
    thread = next(c for c in kept if c["id"] == "discord-104")
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant", "user", "assistant"]
    assert thread["messages"][0]["content"] == "How do I reverse a string in Python?"
    assert thread["messages"][3]["content"].startswith("Call `numbers.reverse()`")
    assert thread["source"] == "discord:discord_raw.jsonl" and thread["where"] == f"{DISCORD}:4"
    assert "discord-102" not in [c["id"] for c in kept]  # continued by the thread, not a conversation of its own


def test_dedup_modes_and_keeping_every_language():
    kept, report = clean_import_files(FILES, dedup="conversation", languages=[])
    ids = [c["id"] for c in kept]
    assert "sg-dup" in ids and "2-0" not in ids  # sg-dup differs after its first turn; Italy is the same throughout
    assert {"sg-de", "sg-zh", "4-0", "discord-113"} <= set(ids)
    assert report.counts().get("duplicate") == 1 and not any(k.startswith("language") for k in report.counts())
    kept, report = clean_import_files(FILES, dedup="none", languages=["en", "de"])
    ids = [c["id"] for c in kept]
    assert {"sg-dup", "2-0", "sg-de", "discord-113"} <= set(ids) and "sg-zh" not in ids
    assert dedup_key([{"role": "user", "content": " a\n b "}, {"role": "assistant", "content": "c"}], "first_turn") == \
        dedup_key([{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"},
                   {"role": "user", "content": "more"}, {"role": "assistant", "content": "d"}], "first_turn")
    with pytest.raises(ValueError, match="'xx'"):
        clean_import_files(FILES, languages=["xx"])
    with pytest.raises(ValueError, match="dedup mode"):
        clean_import_files(FILES, dedup="fuzzy")


def test_strict_mode_stops_at_the_first_bad_record_naming_file_and_line():
    with pytest.raises(ImportFormatError) as error:
        clean_import_files(FILES, strict=True)
    assert str(error.value) == f"{SHAREGPT}:7: turn 0: unknown speaker 'narrator'"
    with pytest.raises(ImportFormatError, match=rf"^{HC3}:2: invalid JSON"):
        import_conversations(HC3, "hc3")  # strict is the importer's default
    with pytest.raises(ImportFormatError, match=rf"^{DISCORD}:7: invalid JSON"):
        read_import_file(DISCORD, "discord", strict=True)
    assert len(import_conversations(HC3, "hc3", strict=False)) == 5


def test_a_file_with_no_good_record_is_an_error_even_when_lenient(tmp_path):
    path = tmp_path / "all_bad.jsonl"
    path.write_text('{"question": "a"}\n{"question": 3, "chatgpt_answers": ["x"]}\n')
    with pytest.raises(ImportFormatError) as error:
        read_import_file(path, "hc3")
    assert str(error.value) == (f"{path}: no conversations found (2 bad records skipped, the first: "
                                f"{path}:1: missing key 'chatgpt_answers')")


def test_language_identification_is_offline_and_ignores_code():
    """The language model ships inside py3langid: identifying a language opens no connection."""
    script = ("import socket\n"
              "def refuse(*a, **k): raise OSError('network used')\n"
              "socket.socket.connect = refuse; socket.create_connection = refuse\n"
              "from imitlib.data.cleaning import language_of\n"
              "print(language_of([{'role': 'user', 'content': 'Wie kann ich meine Morgenroutine verbessern?'}]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"})
    assert out.returncode == 0 and out.stdout.strip() == "de", out.stderr
    assert "en" in known_languages() and len(known_languages()) > 90
    code = "```python\n" + "def reverse(items):\n    return items[::-1]\n" * 5 + "```"
    assert language_of([{"role": "user", "content": "Wie kehre ich eine Liste um? Bitte erkläre es mir kurz."},
                        {"role": "assistant", "content": code}]) == "de"  # the code does not count
    assert language_of([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]) is None


# ---- blocks ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tiny_world import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _conversation(pairs: int, system: bool = False) -> dict:
    messages = [{"role": "system", "content": "be brief"}] if system else []
    for k in range(pairs):
        messages += [{"role": "user", "content": f"q{k} w w"}, {"role": "assistant", "content": f"a{k} w w w w"}]
    return {"id": "c", "source": "test", "where": "test:1", "messages": messages}


def test_long_conversations_split_at_turn_boundaries(tokenizer):
    """Word-level tokenizer: ``<s> BEGINNING OF CONVERSATION:`` is 4 tokens, a turn pair of 3 + 5 words
    with its tags and ``</s>`` is 11, so one pair alone counts 15 and the 4-pair conversation 48."""
    from imitlib.data.budgets import conversation_tokens
    from imitlib.data.cleaning import CleaningReport

    conversation = _conversation(4)
    assert conversation_tokens(tokenizer, conversation["messages"]) == 48
    assert split_into_blocks([conversation], tokenizer, 48) == [conversation]  # fits: unchanged
    report = CleaningReport(strict=False)
    blocks = split_into_blocks([conversation], tokenizer, 40, report)  # 15 + 15 fit, a third pair would not
    assert [b["id"] for b in blocks] == ["c_0", "c_4"]
    assert [[m["content"][:2] for m in b["messages"]] for b in blocks] == [["q0", "a0", "q1", "a1"],
                                                                           ["q2", "a2", "q3", "a3"]]
    assert all(conversation_tokens(tokenizer, b["messages"]) == 26 for b in blocks)
    assert (report.split_conversations, report.blocks, report.over_block, report.block_tokens) == (1, 2, 0, 40)
    report = CleaningReport(strict=False)
    single = split_into_blocks([conversation], tokenizer, 14, report)  # every pair alone is too long
    assert [b["id"] for b in single] == ["c_0", "c_2", "c_4", "c_6"] and report.over_block == 4
    with_system = split_into_blocks([_conversation(3, system=True)], tokenizer, 36)  # 39 tokens whole
    assert [len(b["messages"]) for b in with_system] == [5, 3]  # 17 + 17 fit, a third pair would not; system kept
    assert all(b["messages"][0] == {"role": "system", "content": "be brief"} for b in with_system)


# ---- the 02 stage --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch
    from tiny_world import build_tiny_world

    torch.set_num_threads(1)
    return build_tiny_world(tmp_path_factory.mktemp("tiny_world"))


def _stage_cfg(tmp_path: Path, **overrides):
    from imitlib.config import load

    base = {"run.output_root": str(tmp_path), "run.progress": False, "run.device": "cpu",
            "imitation.teacher.backend": "local", "imitation.teacher.max_new_tokens": 8,
            "imitation.task_prompts": 6, "imitation.task_generation_requests": 0, "imitation.task_seed_pairs": 4,
            "imitation.task_pairs_shown": 2, "imitation.token_budgets": [100, 100000], "imitation.diversity_sample": 10,
            "imitation.broad_source": "files",
            "imitation.import_files": [{"format": form, "path": str(path)} for path, form in FILES],
            "imitation.cleaning.block_tokens": 40}
    return load([], {**base, **overrides}, run_name="t")


def test_the_imitation_stage_cleans_and_splits_imported_files(world, tmp_path):
    from imitlib.study.imitation_data import build_imitation_data

    data = build_imitation_data(_stage_cfg(tmp_path), 0, world)
    report = data.cleaning_report()
    assert report["counts"] == clean_import_files(FILES)[1].counts()
    assert (report["read"], report["kept"], report["block_tokens"]) == (15, 8, 40)
    imported = data.conversations.filter(lambda r: r["family"] == "imported")
    assert len(imported) == report["blocks"] > report["kept"] and report["split_conversations"] >= 1
    assert data.summary["cleaning"] == {"read": 15, "kept": 8, "blocks": report["blocks"], "counts": report["counts"]}
    from imitlib.study.imitation_data import cleaning_table

    table = cleaning_table({0: data})  # what notebook 02 shows
    assert table.loc[0, ["read", "kept", "blocks"]].tolist() == [15, 8, report["blocks"]]
    assert {reason: table.loc[0, reason] for reason in report["counts"]} == report["counts"]
    for row in imported:  # a block over the limit is a single turn pair
        assert row["tokens"] <= 40 or len([m for m in row["messages"] if m["role"] == "user"]) == 1
        assert row["messages"][0]["role"] == "user" and row["messages"][-1]["role"] == "assistant"
    plain = [r for r in imported if r["id"].startswith("sg-plain")]
    assert [r["id"] for r in plain][0] == "sg-plain_0" and len(plain) > 1
    assert [m["content"] for r in plain for m in r["messages"]] == \
        [t["value"] for t in json.loads(SHAREGPT.read_text())[1]["conversations"]]  # nothing lost at the cuts


def test_strict_cleaning_stops_the_stage_at_the_first_bad_record(world, tmp_path):
    from imitlib.study.imitation_data import build_imitation_data

    with pytest.raises(ImportFormatError, match=rf"^{SHAREGPT}:7: turn 0: unknown speaker 'narrator'$"):
        build_imitation_data(_stage_cfg(tmp_path, **{"imitation.cleaning.strict": True}), 0, world)
