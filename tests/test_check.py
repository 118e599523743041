"""``imitlib check`` reads every record of every import file (issue 19, item 4): each of the 18
malformed files in fixtures/malformed/ is caught there, naming file and line, not later inside
the 02 build. Loading params only checks that a file can be read at all (config knows no formats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imitlib import pipeline
from imitlib.config import ConfigError, load
from imitlib.data.importers import check_import_files, check_report

MALFORMED = Path(__file__).parent / "fixtures" / "malformed"
GOOD = Path(__file__).parent / "fixtures" / "imitation"

# (file, line named, what the message says, whether the file is unusable whatever the mode)
CORPUS = [
    ("alpaca_missing_output.json", 4, "missing key 'output'", False),
    ("discord_isbot_not_bool.jsonl", 2, "'isBot' must be bool", True),  # its only reply is bad: nothing left
    ("discord_reply_to_missing.jsonl", 4, "replies to message '77', which is not in the file", False),
    ("discord_whole_export.json", 1, "one JSON document over many lines", True),
    ("hc3_answers_not_list.jsonl", 2, "'chatgpt_answers' must be list", False),
    ("hc3_bad_json_late.jsonl", 3, "invalid JSON", False),
    ("hc3_empty_answer_text.jsonl", 3, "empty assistant message", False),
    ("messages_latin1_late.jsonl", 3, "not UTF-8", False),
    ("messages_no_answer.jsonl", 2, "must end with an assistant turn", False),
    ("messages_unknown_role.jsonl", 3, "unknown role 'tool'", False),
    ("messages_wrong_order.jsonl", 2, "must start with a user turn", False),
    ("sharegpt_latin1_late.json", 322, "not UTF-8", True),  # past the first 64 KiB
    ("sharegpt_missing_comma.json", 4, "expected ',' or ']'", True),
    ("sharegpt_not_object.json", 4, "expected an object, got str", False),
    ("sharegpt_trailing_garbage.json", 5, "unexpected data after the array", True),
    ("sharegpt_truncated.json", 4, "invalid JSON in the record starting on this line", True),
    ("sharegpt_unknown_speaker.json", 4, "unknown speaker 'bot3000'", False),
    ("sharegpt_value_not_string.json", 4, "'value' must be str, got int", False),
]


def test_the_corpus_is_the_whole_malformed_set():
    assert len(CORPUS) == 18 and sorted(p.name for p in MALFORMED.iterdir()) == [c[0] for c in CORPUS]


def _params(tmp_path: Path, name: str, strict: bool = False) -> Path:
    params = tmp_path / "check.yaml"
    params.write_text(f"run:\n  output_root: {tmp_path / 'outputs'}\nimitation:\n  broad_source: files\n"
                      f"  cleaning:\n    strict: {str(strict).lower()}\n  import_files:\n"
                      f"    - {{format: {name.split('_')[0]}, path: {MALFORMED / name}}}\n"
                      f"    - {{format: sharegpt, path: {GOOD / 'sharegpt.json'}}}\n")
    return params


@pytest.mark.parametrize("name, line, what, unusable", CORPUS, ids=[c[0] for c in CORPUS])
def test_check_catches_each_malformed_file(tmp_path, capsys, name, line, what, unusable):
    path = MALFORMED / name
    params = _params(tmp_path, name)
    try:  # params loading looks only at whether the file can be read (its first bytes)
        load([params])
        loaded = True
    except ConfigError as error:
        assert name == "messages_latin1_late.jsonl" and f"{path}: line {line}: not UTF-8" in str(error)
        loaded = False
    code = pipeline.main(["check", str(params)])
    out, err = capsys.readouterr()
    if not loaded:
        assert code == 2 and f"{path}: line {line}: not UTF-8" in err
        return
    if unusable:  # the build would fail on this file in any mode
        assert code == 2 and f"error: imitation.import_files.0: {path} (" in err and f"{path}:{line}: " in err, err
        assert what in err
    else:  # lenient: the build skips the record, and check lists it
        assert code == 0, err
        assert f"  {path}:{line}: " in out and what in out and "1 bad records, skipped when building" in out
    assert f"checked: imitation.import_files.1: {GOOD / 'sharegpt.json'} (sharegpt): 2 records, 2 conversations; ok" \
        in (err if unusable else out)  # the report goes to stderr when check fails
    # strict: every one of them stops the check, naming file and line
    assert pipeline.main(["check", str(_params(tmp_path, name, strict=True))]) == 2
    _, err = capsys.readouterr()
    assert f"{path}:{line}: " in err or f"{path}: line {line}: " in err


def test_check_reports_every_bad_record_of_a_file(tmp_path):
    path = tmp_path / "many.jsonl"
    good = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'
    path.write_text("\n".join([good, "{oops", good, '{"messages": []}', good, '{"messages": 3}']) + "\n")
    (check,) = check_import_files([("imitation.import_files.0", path, "messages")])
    assert (check.records, check.conversations) == (6, 3)
    assert [(p.line, p.reason) for p in check.problems] == [(2, "invalid_json"), (4, "no_turns"), (6, "wrong_type")]
    text, ok = check_report([check], strict=False)
    assert ok and text.count(f"  {path}:") == 3
    assert check_report([check], strict=True)[1] is False


def test_check_of_the_cleaning_fixtures_and_of_world_prompts(capsys):
    assert pipeline.main(["check", "params/smoke.yaml"]) == 0  # world prompts: no import file to read
    out, _ = capsys.readouterr()
    assert "checked:" not in out


@pytest.mark.parametrize("form, name, what", [
    ("messages", "sharegpt.json", "1: format 'messages' is JSON lines (one object per line), but the file starts with '['"),
    ("alpaca", "hc3.jsonl", "1: expected a JSON array of records, but the file starts with '{\"id\": 0, \"question\"'"),
], ids=["jsonl-given-an-array", "array-given-jsonl"])
def test_check_catches_a_file_in_another_format(tmp_path, capsys, form, name, what):
    params = tmp_path / "wrong.yaml"
    params.write_text(f"run:\n  output_root: {tmp_path / 'outputs'}\nimitation:\n  broad_source: files\n"
                      f"  import_files:\n    - {{format: {form}, path: {GOOD / name}}}\n")
    load([params])  # readable text: loading does not look at the format
    assert pipeline.main(["check", str(params)]) == 2
    assert f"{GOOD / name}:{what}" in capsys.readouterr().err
