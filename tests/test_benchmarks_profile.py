"""``benchmarks/profile_study.py`` on a run folder of fake stage manifests (fixed start and end times).

Checks what the profile adds up: every seed's units counted once, the newest chain of a stage's
versions chosen, timed parts mapped to their kinds (an unknown label is ``other``, the untimed rest of
a build ``untimed``), overlapping seeds' elapsed time against their summed work, the critical path and the slowest seed chain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import profile_study  # noqa: E402

T0 = 1_700_000_000.0


def fake_build(stages: Path, name: str, key: str, start: float, seconds: float, upstream=(), info=None) -> Path:
    """A completed stage folder ``stages/<name>/<key>`` whose manifest says it ran [T0+start, T0+start+seconds]."""
    folder = stages / name / key
    folder.mkdir(parents=True)
    manifest = {"stage": name, "hash": key, "upstream": list(upstream), "info": info or {},
                "host": {"cpus": 2},
                "timings": {"started": T0 + start, "finished": T0 + start + seconds, "seconds": seconds}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "COMPLETE").write_text(key + "\n")
    return folder


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """Two seeds built by parallel workers (overlapping in time), one stale world version, a 05 stage."""
    stages = tmp_path / "run" / "stages"
    # seed 0 and seed 1 worlds run at the same time; seed 0 also has a newer version no later stage uses
    # (built after this run, by params whose run did not get further)
    fake_build(stages, "01_world/seed0", "w0new", 1000, 5.0, info={"timings": {"pretrain base-s": 4.0}})
    fake_build(stages, "01_world/seed0", "w0", 0, 10.0, info={"timings": {
        "pretrain base-s": 3.0, "teacher pretrain": 2.0, "teacher chat": 1.5, "calibration": 1.0,
        "knowledge base, tasks, tokenizer": 0.5, "a step nobody named": 0.25}})
    fake_build(stages, "01_world/seed1", "w1", 2, 12.0, info={"timings": {"pretrain base-s": 8.0}})
    fake_build(stages, "02_imitation_data/seed0", "d0", 20, 6.0, ["w0"], {"timings": {
        "teacher start": 1.0, "teacher generation: imitation answers": 4.0}})
    fake_build(stages, "02_imitation_data/seed1", "d1", 20, 4.0, ["w1"], {"timings": {
        "teacher generation: imitation answers": 3.0}})
    for seed, (world, data) in enumerate([("w0", "d0"), ("w1", "d1")]):
        for k, label in enumerate(["base-s/broad/100", "base-s/task/100"]):
            fake_build(stages, f"03_train/seed{seed}/{label}", f"u{seed}{k}", 30 + 3 * k, 2.0, [world, data],
                       {"seconds": 1.5})
        fake_build(stages, f"03_train/seed{seed}", f"t{seed}", 37, 0.5, [world, data])
        fake_build(stages, f"04_evaluate/seed{seed}/models/s{seed}_base-s_broad_100", f"e{seed}", 40, 3.0,
                   [world, data, f"u{seed}0"],
                   {"timings": {"model load": 0.5, "lm-eval": 1.0, "evaluation generation": 1.25}})
        fake_build(stages, f"04_evaluate/seed{seed}", f"v{seed}", 45, 2.0, [world, data, f"t{seed}"],
                   {"timings": {"rating": 1.5, "judge start": 0.25, "judge replies": 0.25}})
    # 05: the analysis ran 3 s before its 1 s build (it writes the store the analysis computed)
    fake_build(stages, "05_analysis", "a", 51, 1.0, ["v0", "v1"], {"timings": {"analysis": 3.0}})
    return tmp_path / "run"


def test_profile_sums_seeds_units_and_kinds(run_dir):
    result = profile_study.profile(run_dir)
    stages, kinds, totals = result["stages"], result["kinds"], result["totals"]

    # the newer seed-0 world (no later stage names it) is left out; every seed's units are counted once
    assert stages["01_world"]["folders"] == ["01_world/seed0/w0", "01_world/seed1/w1"]
    assert stages["01_world"]["per_seed_seconds"] == {"seed0": 10.0, "seed1": 12.0}
    assert stages["03_train"]["builds"] == 6 and stages["03_train"]["units"] == 4
    assert stages["03_train"]["work_seconds"] == pytest.approx(2 * (2.0 + 2.0 + 0.5))
    # the two seeds' worlds overlap in time: [0, 10] and [2, 14] elapse 14 s for 22 s of work
    assert stages["01_world"]["elapsed_seconds"] == pytest.approx(14.0)
    assert stages["01_world"]["work_seconds"] == pytest.approx(22.0)

    assert kinds["pretraining"]["seconds"] == pytest.approx(3.0 + 2.0 + 8.0)
    assert kinds["pretraining"]["labels"] == {"pretrain base-s": 11.0, "teacher pretrain": 2.0}
    assert kinds["teacher chat tuning"]["seconds"] == pytest.approx(1.5)
    assert kinds["calibration"]["seconds"] == pytest.approx(1.0)
    assert kinds["teacher generation"]["seconds"] == pytest.approx(1.0 + 4.0 + 3.0)
    assert kinds["finetuning"]["seconds"] == pytest.approx(4 * 1.5)
    assert kinds["lm-eval"]["seconds"] == pytest.approx(2.0)
    assert kinds["evaluation generation"]["seconds"] == pytest.approx(2.5)
    assert kinds["rating"]["seconds"] == pytest.approx(3.0)
    assert kinds["LLM judge"]["labels"] == {"judge replies": 0.5, "judge start": 0.5}
    assert kinds["analysis"]["seconds"] == pytest.approx(3.0)
    assert kinds["other"]["labels"] == {"a step nobody named": 0.25}
    # untimed rests: world 10-8.25 and 12-8, data 6-5 and 4-3, sweep runs 4 x 0.5, sweep tables 2 x 0.5,
    # answer units 2 x 0.25
    assert kinds["untimed"]["seconds"] == pytest.approx(1.75 + 4.0 + 1.0 + 1.0 + 2.0 + 1.0 + 0.5)
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(k["seconds"] for k in kinds.values()) == pytest.approx(totals["work_seconds"])

    # 05 counts its analysis, which ran before its shorter build
    assert stages["05_analysis"]["work_seconds"] == pytest.approx(3.0)
    seed0 = 10.0 + 6.0 + 4.5 + 3.0 + 2.0
    seed1 = 12.0 + 4.0 + 4.5 + 3.0 + 2.0
    assert totals["seed_chains_seconds"] == {"seed0": seed0, "seed1": seed1}
    assert totals["slowest_seed_chain_seconds"] == pytest.approx(max(seed0, seed1) + 3.0)
    # the runner waits for both seeds of a stage: 01 seed 1, 02 seed 0, 03 and 04 either, then 05
    assert totals["critical_path_seconds"] == pytest.approx(12.0 + 6.0 + 4.5 + 5.0 + 3.0)
    assert totals["work_seconds"] == pytest.approx(seed0 + seed1 + 3.0)
    assert totals["seeds_overlapped"] is True
    assert totals["elapsed_seconds"] < totals["work_seconds"]
    assert "pretraining" in profile_study.format_profile(result)


def test_profile_takes_the_units_of_the_chosen_stage_version(run_dir):
    stages = run_dir / "stages"
    # a later sweep run of the same unit, built after seed 0's sweep table: another run's, not this one's
    fake_build(stages, "03_train/seed0/base-s/broad/100", "late", 500, 50.0, ["w0", "d0"], {"seconds": 49.0})
    # a sweep run of another world: never seed 0's
    fake_build(stages, "03_train/seed0/base-s/none/0", "alien", 31, 7.0, ["w0new", "d0"], {"seconds": 6.0})
    result = profile_study.profile(run_dir)
    assert result["stages"]["03_train"]["per_seed_seconds"]["seed0"] == pytest.approx(4.5)
    assert result["kinds"]["finetuning"]["seconds"] == pytest.approx(4 * 1.5)


def test_profile_names_the_manifest_it_cannot_read(tmp_path):
    folder = fake_build(tmp_path / "run" / "stages", "01_world/seed0", "w0", 0, 1.0)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["info"] = {"timings": {"pretrain base-s": "slow"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"w0/manifest.json: info.timings\['pretrain base-s'\]"):
        profile_study.profile(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no stages/ folder"):
        profile_study.profile(tmp_path / "nowhere")


def test_profile_script_writes_the_json(run_dir, tmp_path):
    script = Path(profile_study.__file__)
    out = subprocess.run([sys.executable, str(script), str(run_dir), "--results-dir", str(tmp_path / "results")],
                         capture_output=True, text=True, check=True)
    saved = json.loads((tmp_path / "results" / "profile_run.json").read_text())
    assert saved["kinds"]["finetuning"]["seconds"] == pytest.approx(6.0)
    assert "critical path" in out.stdout and "teacher generation" in out.stdout


def test_profile_counts_the_units_of_a_stage_whose_build_is_missing(run_dir):
    import shutil

    # seed 1's sweep table was never written (the run stopped after its sweep runs)
    shutil.rmtree(run_dir / "stages" / "03_train" / "seed1" / "t1")
    result = profile_study.profile(run_dir)
    assert result["stages"]["03_train"]["per_seed_seconds"] == {"seed0": 4.5, "seed1": 4.0}
    assert result["kinds"]["finetuning"]["seconds"] == pytest.approx(4 * 1.5)


def test_profile_splits_notebook_time_into_stage_builds_and_the_rest(run_dir):
    from datetime import datetime, timezone

    def utc(offset: float) -> str:  # papermill's format: UTC without a zone
        return datetime.fromtimestamp(T0 + offset, tz=timezone.utc).replace(tzinfo=None).isoformat()

    notebooks = run_dir / "notebooks"
    notebooks.mkdir()
    cells = [{"cell_type": "code", "source": "import imitlib\n", "metadata": {"papermill": {"duration": 3.0}}},
             {"cell_type": "markdown", "source": "text", "metadata": {}},
             {"cell_type": "code", "source": ["stages = build()\n", "stages"], "metadata": {"papermill": {"duration": 13.0}}}]
    (notebooks / "01_world.ipynb").write_text(json.dumps({"cells": cells, "metadata": {"papermill": {
        "duration": 16.0, "start_time": utc(-1), "end_time": utc(15)}}}))
    entry = profile_study.profile(run_dir)["notebooks"]["01_world"]
    # the two seeds' worlds cover [0, 14] of the notebook's [-1, 15]
    assert entry["stage_builds"] == pytest.approx(14.0) and entry["outside_stage_builds"] == pytest.approx(2.0)
    assert entry["slowest_cells"] == [{"cell": 2, "seconds": 13.0, "first_line": "stages = build()"},
                                      {"cell": 0, "seconds": 3.0, "first_line": "import imitlib"}]


def test_profile_of_a_real_track_world_counts_its_resolving_as_world_data(tmp_path):
    fake_build(tmp_path / "run" / "stages", "01_world/seed0", "r0", 0, 9.0, info={"kind": "real", "seconds": 8.0})
    kinds = profile_study.profile(tmp_path / "run")["kinds"]
    assert kinds["world data"]["labels"] == {"real models and items": 8.0}
    assert kinds["untimed"]["seconds"] == pytest.approx(1.0)
