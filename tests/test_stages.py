"""Cached stages: hashing, atomic completion, reuse, partial redo, manifests."""

import json
from pathlib import Path

import pytest

from imitlib.config import load
from imitlib.stages import COMPLETE_MARKER, Stage, StageError, atomic_write_text, stage_hash


@pytest.fixture()
def cfg(tmp_path: Path):
    return load(["params/smoke.yaml"], {"run.output_root": str(tmp_path)})


def test_hash_depends_on_config_subset_and_upstream() -> None:
    h = stage_hash("s", {"a": 1}, [])
    assert h == stage_hash("s", {"a": 1}, [])
    assert h != stage_hash("s", {"a": 2}, [])
    assert h != stage_hash("t", {"a": 1}, [])
    assert h != stage_hash("s", {"a": 1}, ["abc"])
    assert len(h) == 10


def test_stage_hash_ignores_keys_it_does_not_read(tmp_path: Path) -> None:
    a = load(["params/smoke.yaml"], {"run.output_root": str(tmp_path), "run.progress": True})
    b = load(["params/smoke.yaml"], {"run.output_root": str(tmp_path), "run.progress": False})
    assert Stage(a, "x", reads=["analysis"]).hash == Stage(b, "x", reads=["analysis"]).hash
    c = load(["params/smoke.yaml"], {"run.output_root": str(tmp_path), "analysis.confidence": 0.9})
    assert Stage(a, "x", reads=["analysis"]).hash != Stage(c, "x", reads=["analysis"]).hash


def test_build_completes_with_manifest_and_marker(cfg) -> None:
    stage = Stage(cfg, "demo", reads=["analysis"])
    assert not stage.done
    with stage.build(info={"note": 1}) as work:
        (work / "a.txt").write_text("hello")
        (work / "sub").mkdir()
        (work / "sub" / "b.txt").write_text("world")
    assert stage.done and not stage.partial.exists()
    manifest = stage.manifest()
    assert manifest["hash"] == stage.hash
    assert set(manifest["files"]) == {"a.txt", "sub/b.txt"}
    assert manifest["config_subset"] == {"analysis": cfg.subset("analysis")["analysis"]}
    assert manifest["info"] == {"note": 1}
    assert "torch" in manifest["packages"] and manifest["seeds"] == [0]
    assert manifest["timings"]["seconds"] >= 0
    assert stage.verify() == []
    (stage.path / "a.txt").write_text("tampered")
    assert stage.verify() == ["a.txt"]


def test_failed_build_leaves_no_completed_stage_and_is_redone(cfg) -> None:
    stage = Stage(cfg, "demo", reads=["analysis"])
    with pytest.raises(RuntimeError):
        with stage.build() as work:
            (work / "half.txt").write_text("partial")
            raise RuntimeError("killed")
    assert not stage.done and not stage.path.exists() and stage.partial.exists()
    with pytest.raises(StageError):
        stage.file("half.txt")
    with stage.build() as work:
        assert not (work / "half.txt").exists()  # a partial folder is cleared, not reused
        (work / "full.txt").write_text("done")
    assert stage.done and stage.file("full.txt").read_text() == "done"


def test_resume_keeps_partial_folder(cfg) -> None:
    stage = Stage(cfg, "demo", reads=["analysis"])
    with pytest.raises(RuntimeError):
        with stage.build(resume=True) as work:
            (work / "checkpoint").write_text("step 5")
            raise RuntimeError("killed")
    with stage.build(resume=True) as work:
        assert (work / "checkpoint").read_text() == "step 5"


def test_resume_drops_the_temporary_files_of_writes_a_kill_interrupted(cfg) -> None:
    """A SIGKILL between an atomic write's open and rename leaves ``.<name>.tmp-<pid>``: not a result."""
    stage = Stage(cfg, "demo", reads=["analysis"])
    with pytest.raises(RuntimeError):
        with stage.build(resume=True) as work:
            (work / "checkpoint").write_text("step 5")
            (work / "run").mkdir()
            (work / "run" / ".manifest.json.tmp-4242").write_text("{\"half")
            raise RuntimeError("killed")
    with stage.build(resume=True) as work:
        assert (work / "checkpoint").read_text() == "step 5"
    assert stage.done
    assert not (stage.path / "run" / ".manifest.json.tmp-4242").exists()
    assert (stage.path / "checkpoint").exists()


def test_completed_stage_is_reused_unless_forced(tmp_path: Path, cfg) -> None:
    stage = Stage(cfg, "demo", reads=["analysis"])
    with stage.build() as work:
        (work / "x").write_text("1")
    assert Stage(cfg, "demo", reads=["analysis"]).done
    forced = load(["params/smoke.yaml"], {"run.output_root": str(tmp_path), "run.force": True})
    again = Stage(forced, "demo", reads=["analysis"])
    assert again.hash == stage.hash and not again.done
    with again.build() as work:
        (work / "x").write_text("2")
    assert again.done and (again.path / "x").read_text() == "2"
    assert (again.path / COMPLETE_MARKER).exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "deep" / "f.json", json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_hash_depends_on_the_code_digest() -> None:
    assert stage_hash("s", {"a": 1}, [], code="abc") != stage_hash("s", {"a": 1}, [], code="abd")


def test_no_file_of_a_completed_stage_names_its_partial_folder(cfg) -> None:
    stage = Stage(cfg, "demo", reads=["analysis"])
    with stage.build() as work:
        atomic_write_text(work / "tasks" / "qa.yaml", f"dataset_kwargs:\n  data_files:\n    test: {work / 'tasks' / 'qa.jsonl'}\n")
        atomic_write_text(work / "spec.json", json.dumps({"output_dir": str(work)}))
        (work / "weights.bin").write_bytes(str(work).encode())  # binary files are left as written
    assert ".partial" in str(work)
    for path in (stage.path / "tasks" / "qa.yaml", stage.path / "spec.json"):
        assert ".partial" not in path.read_text()
    assert str(stage.path / "tasks" / "qa.jsonl") in (stage.path / "tasks" / "qa.yaml").read_text()
    assert json.loads((stage.path / "spec.json").read_text()) == {"output_dir": str(stage.path)}
    assert stage.verify() == []  # the manifest's checksums are those of the rewritten files


def test_the_manifest_records_the_cpu_and_torch_threads(cfg) -> None:
    import torch

    stage = Stage(cfg, "demo", reads=["analysis"])
    with stage.build() as work:
        (work / "x").write_text("1")
    host = stage.manifest()["host"]
    assert host["torch_threads"] == torch.get_num_threads() and host["cpus"]
    if Path("/proc/cpuinfo").exists():
        text = Path("/proc/cpuinfo").read_text()
        assert host["cpu"]["model"] and host["cpu"]["model"] in text
        assert host["cpu"]["flags"] and all(flag in text for flag in host["cpu"]["flags"][:5])


def test_exclude_leaves_a_key_out_of_the_subset(cfg) -> None:
    full = Stage(cfg, "demo", reads=["train"])
    less = Stage(cfg, "demo", reads=["train"], exclude=["train.token_budgets"])
    assert "token_budgets" in full.config_subset["train"] and "token_budgets" not in less.config_subset["train"]
    with pytest.raises(KeyError, match="does not read"):
        Stage(cfg, "demo", reads=["train"], exclude=["evaluate.judge"])
