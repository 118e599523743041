"""Reliability: malformed params and data files get errors naming the file and line or key, and
never touch what an earlier run left under the outputs folder (issue 10, item 3)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "imitation"))
from tiny_world import TinyWorld  # noqa: E402

from imitlib import pipeline  # noqa: E402
from imitlib.config import PROJECT_ROOT, ConfigError, load  # noqa: E402
from imitlib.data import ImportFormatError, import_conversations  # noqa: E402
from imitlib.study.imitation_data import build_imitation_data, imitation_stage
from imitlib.stages import COMPLETE_MARKER, Stage, atomic_write_text, write_run_config  # noqa: E402

BAD_DATA = Path(__file__).parent / "fixtures" / "reliability" / "bad_data"
RUN_NAME = "existing"


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of its bytes ("dir" for folders)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


@pytest.fixture()
def earlier_run(tmp_path: Path) -> Path:
    """An outputs folder holding a finished run: its config, a completed stage and a teacher cache."""
    root = tmp_path / "outputs"
    cfg = load([], {"run.output_root": str(root)}, run_name=RUN_NAME)
    write_run_config(cfg)
    stage = Stage(cfg, "05_analysis", reads=["analysis"])
    with stage.build() as work:
        atomic_write_text(work / "tables" / "claims.csv", "claim,verdict\nstyle,supported\n")
    atomic_write_text(cfg.run_dir / "cache" / "teacher" / "w0" / "responses.jsonl",
                      json.dumps({"key": "k", "answer": "a"}) + "\n")
    return root


# ---- params ------------------------------------------------------------------------------------
# (name, file text with {root} for the earlier run's output root, fragments the error must contain;
#  {file} is the params file's path)
PARAMS_CORPUS = [
    ("unknown_key", "run:\n  output_root: {root}\n  sedes: [1]\n", ["{file}:3", "run.sedes"]),
    ("unknown_section", "run:\n  output_root: {root}\ntrian:\n  lr: 0.1\n", ["{file}:3", "trian"]),
    ("unknown_key_in_list", "run:\n  output_root: {root}\nimitation:\n  broad_source: files\n  import_files:\n"
     "    - format: hc3\n      path: data.jsonl\n      encoding: latin1\n",
     ["{file}:8", "unknown key 'imitation.import_files.0.encoding'"]),
    ("unknown_key_in_world_list", "run:\n  output_root: {root}\nworld:\n  base_models:\n"
     "    - {{name: a, hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32}}\n"
     "    - name: b\n      hidden_sizee: 16\n", ["{file}:7", "unknown key 'world.base_models.1.hidden_sizee'"]),
    ("wrong_type_in_list", "run:\n  output_root: {root}\nworld:\n  base_models:\n"
     "    - {{name: a, hidden_size: wide, layers: 1, heads: 2, intermediate_size: 32}}\n",
     ["{file}:5", "world.base_models.0.hidden_size"]),
    ("missing_import_file", "run:\n  output_root: {root}\nimitation:\n  broad_source: files\n  import_files:\n"
     "    - format: sharegpt\n      path: data/nowhere.json\n",
     ["{file}:7", "imitation.import_files.0.path", str(PROJECT_ROOT / "data" / "nowhere.json"), "file not found"]),
    ("import_file_not_utf8", "run:\n  output_root: {root}\nimitation:\n  broad_source: files\n  import_files:\n"
     "    - {{format: sharegpt, path: tests/fixtures/reliability/bad_data/sharegpt_latin1.json}}\n",
     ["{file}:6", "imitation.import_files.0.path", "sharegpt_latin1.json: line 3: not UTF-8"]),
    ("missing_human_ratings", "run:\n  output_root: {root}\nevaluate:\n  human_ratings:\n    - ratings/gone.csv\n",
     ["{file}:5", "evaluate.human_ratings.0", "ratings/gone.csv: file not found"]),
    ("human_ratings_wrong_type", "run:\n  output_root: {root}\nevaluate:\n  human_ratings: [README.md]\n",
     ["{file}:4", "evaluate.human_ratings.0", "unsupported ratings file type '.md'"]),
    ("wrong_type", "run:\n  output_root: {root}\ntrain:\n  lr: fast\n", ["{file}:4", "train.lr"]),
    ("wrong_type_list", "run:\n  output_root: {root}\n  seeds: zero\n", ["{file}:3", "run.seeds"]),
    ("section_not_a_mapping", "run:\n  output_root: {root}\ntrain: [1, 2]\n", ["{file}:3", "train"]),
    ("out_of_range", "run:\n  output_root: {root}\nimitation:\n  teacher:\n    max_concurrency: 0\n",
     ["{file}:5", "imitation.teacher.max_concurrency"]),
    ("out_of_range_confidence", "run:\n  output_root: {root}\nanalysis:\n  confidence: 1.5\n",
     ["{file}:4", "analysis.confidence"]),
    ("bad_choice", "run:\n  output_root: {root}\n  device: tpu\n", ["{file}:3", "run.device"]),
    ("escapes_outputs", "run:\n  output_root: outputs/../../escaped\n", ["{file}:2", "run.output_root", "escapes"]),
    ("escapes_upwards", "run:\n  output_root: ../escaped\n", ["{file}:2", "run.output_root"]),
    ("not_under_outputs", "run:\n  output_root: notebooks\n", ["{file}:2", "run.output_root", "escapes"]),
    ("external_absolute", "run:\n  seeds: [0]\n  output_root: {escaped}\n",
     ["{file}:3", "run.output_root", "outside the project's outputs/", "allow_external_output_root"]),
    ("invalid_yaml", "run:\n  output_root: {root}\n  seeds: [0\n", ["{file}", "line 4", "invalid YAML"]),
    ("not_a_mapping", "- run\n- train\n", ["{file}", "top level must be a mapping"]),
    ("reserved_key", "run_name: other\nrun:\n  output_root: {root}\n", ["{file}:1", "run_name"]),
]


@pytest.mark.parametrize("name, text, fragments", PARAMS_CORPUS, ids=[c[0] for c in PARAMS_CORPUS])
def test_malformed_params_are_refused_before_anything_is_written(tmp_path, earlier_run, capsys, name, text,
                                                                 fragments):
    params = tmp_path / "params" / f"{name}.yaml"
    params.parent.mkdir()
    escaped = PROJECT_ROOT.parent / "escaped"
    params.write_text(text.format(root=earlier_run, escaped=escaped))
    before = snapshot(earlier_run)
    assert pipeline.main(["run", str(params), "--run-name", RUN_NAME]) == 2
    error = capsys.readouterr().err
    for fragment in fragments:
        assert fragment.format(file=params) in error, error
    assert snapshot(earlier_run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "params"]
    assert not escaped.exists() and not (PROJECT_ROOT / "outputs" / RUN_NAME).exists()


def test_missing_undecodable_and_overridden_params(tmp_path, earlier_run, capsys):
    before = snapshot(earlier_run)
    missing = tmp_path / "nowhere.yaml"
    assert pipeline.main(["run", str(missing), "--run-name", RUN_NAME]) == 2
    assert f"{missing}: params file not found" in capsys.readouterr().err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(f"run:\n  output_root: {earlier_run}\n  # caf\xe9 au lait\n".encode("latin-1"))
    assert pipeline.main(["run", str(latin), "--run-name", RUN_NAME]) == 2
    assert f"{latin}:3: not UTF-8" in capsys.readouterr().err
    common = ["run", "params/smoke.yaml", "--run-name", RUN_NAME, "--set", f"run.output_root={earlier_run}"]
    assert pipeline.main(common + ["--set", "train.lr=abc"]) == 2
    assert "overrides: train.lr" in capsys.readouterr().err
    assert pipeline.main(common + ["--set", "train.lrr=1"]) == 2
    assert "overrides: unknown key 'train.lrr'" in capsys.readouterr().err
    assert pipeline.main(common + ["--set", "train.lr"]) == 2
    assert "KEY.PATH=VALUE" in capsys.readouterr().err
    assert snapshot(earlier_run) == before


# ---- data files --------------------------------------------------------------------------------
DATA_CORPUS = [
    ("messages_invalid_json.jsonl", 2, "invalid JSON"),
    ("messages_missing_role.jsonl", 3, "missing key 'role'"),
    ("messages_empty_conversation.jsonl", 3, "no turns"),
    ("messages_no_answer.jsonl", 2, "end with an assistant turn"),
    ("messages_latin1.jsonl", 2, "not UTF-8"),
    ("sharegpt_missing_from.json", 9, "missing key 'from'"),
    ("sharegpt_empty_conversation.json", 3, "no turns"),
    ("sharegpt_latin1.json", 3, "not UTF-8"),
    ("alpaca_empty_output.json", 3, "empty assistant message"),
    ("hc3_empty_question.jsonl", 2, "empty user message"),
    ("hc3_wrong_type.jsonl", 2, "'chatgpt_answers' must be list"),
]


@pytest.mark.parametrize("name, line, what", DATA_CORPUS, ids=[c[0] for c in DATA_CORPUS])
def test_malformed_data_files_name_file_and_line(name, line, what):
    path = BAD_DATA / name
    with pytest.raises(ImportFormatError) as error:
        import_conversations(path, name.split("_")[0])
    assert f"{path}:{line}:" in str(error.value) and what in str(error.value), str(error.value)


GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
HUGE = 12_000_000


@pytest.mark.parametrize("name, form, text, line, what", [
    ("huge_role.jsonl", "messages",
     GOOD_LINE + "\n" + json.dumps({"messages": [{"role": "x" * HUGE, "content": "hi"}]}) + "\n", 2, "unknown role"),
    ("huge_unterminated.jsonl", "messages",
     GOOD_LINE + "\n" + '{"messages": [{"role": "user", "content": "' + "y" * HUGE + "\n", 2, "invalid JSON"),
    ("huge_question.jsonl", "messages",
     GOOD_LINE + "\n" + json.dumps({"messages": [{"role": "user", "content": "z" * HUGE}]}) + "\n", 2,
     "end with an assistant turn"),
    ("huge_speaker.json", "sharegpt",
     "[\n" + json.dumps({"conversations": [{"from": "q" * HUGE, "value": "hi"}]}) + "\n]\n", 2, "unknown speaker"),
], ids=["role", "unterminated", "question", "speaker"])
def test_huge_lines_get_short_errors_naming_file_and_line(tmp_path, name, form, text, line, what):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ImportFormatError) as error:
        import_conversations(path, form)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}:") and what in message
    assert len(message) < len(str(path)) + 300, message[:400]  # the huge field is not echoed back


@pytest.mark.parametrize("name, line, what", DATA_CORPUS, ids=[c[0] for c in DATA_CORPUS])
def test_a_bad_import_file_leaves_earlier_results_untouched(tmp_path, earlier_run, name, line, what):
    """A run given a malformed import file fails naming the file and line: at load time when the file's
    start is wrong (not UTF-8), else when the imitation stage meets it mid-build. Either way no stage is
    marked complete and the earlier run's files are byte for byte as they were."""
    world = TinyWorld(root=tmp_path / "world", teacher_dir=tmp_path / "world" / "teacher",
                      tokenizer_dir=tmp_path / "world" / "tokenizer", base_models={})
    bad_file = BAD_DATA / name
    overrides = {"run.output_root": str(earlier_run), "run.progress": False,
                 "imitation.broad_source": "files",
                 "imitation.import_files": [{"format": name.split("_")[0], "path": str(bad_file)}],
                 "imitation.cleaning.strict": True,  # lenient cleaning skips the bad record instead
                 "imitation.task_generation_requests": 0,
                 # never reached: the import fails before any prompt is sent
                 "imitation.teacher.backend": "openai", "imitation.teacher.base_url": "http://127.0.0.1:9/v1",
                 "imitation.teacher.model": "unused"}
    before = snapshot(earlier_run)
    try:
        cfg = load([], overrides, run_name=RUN_NAME)
    except ConfigError as error:
        assert f"overrides: imitation.import_files.0.path: {bad_file}: line {line}: " in str(error), str(error)
        assert what in str(error) and what == "not UTF-8"  # only a wrong start is refused at load time
        assert snapshot(earlier_run) == before
        return
    with pytest.raises(ImportFormatError) as error:
        build_imitation_data(cfg, 0, world)
    assert str(error.value).startswith(f"{bad_file}:{line}: ") and what in str(error.value), str(error.value)
    stage = imitation_stage(cfg, 0)
    assert not stage.done and not stage.path.exists()
    after = snapshot(earlier_run)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing overwritten
    new = sorted(set(after) - set(before))
    partial = str(stage.partial.relative_to(earlier_run))
    assert all(p == partial or p.startswith(partial + "/") or Path(partial).is_relative_to(p) for p in new), new
    markers = [str(p.relative_to(earlier_run)) for p in earlier_run.rglob(COMPLETE_MARKER)]
    assert len(markers) == 1 and "/stages/05_analysis/" in f"/{markers[0]}"  # only the earlier run's stage
