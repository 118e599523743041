"""benchmarks/wording_drift.py: per-seed convergence and teacher-margin verdicts from built worlds' calibration tables."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from imitlib.config import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("wording_drift", PROJECT_ROOT / "benchmarks" / "wording_drift.py")
wording_drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wording_drift)


def _base(seed, name, recall, gain, pool):
    return {"seed": seed, "model": name, "role": "base", "fewshot_recall": recall, "replay_gain": gain,
            "pool_replay_gain": pool, "chat_qa_accuracy": 40.0, "replay_gains": "", "convergence_rounds": 0,
            "pretrain_rows": 6250}


def _teacher(seed, chat):
    return {"seed": seed, "model": "teacher", "role": "teacher", "fewshot_recall": 80.0, "replay_gain": None,
            "pool_replay_gain": None, "chat_qa_accuracy": chat}


def _run(folder: Path, rows) -> Path:
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "tables" / "01_world_calibration_by_seed.csv", index=False)
    return folder


def test_verdicts_per_seed(tmp_path, capsys):
    run = _run(tmp_path / "w", [
        # seed 1: both bases within 5 pts; teacher 90 vs best base 60 -> margin 30, met
        _base(1, "base-xs", 60.0, 5.0, -1.0), _base(1, "base-m", 50.0, -6.0, 2.0), _teacher(1, 90.0),
        # seed 2: base-m gains 7.5 -> not converged; teacher 70 vs best base 55 -> margin 15, missed
        _base(2, "base-xs", 55.0, 1.0, 0.0), _base(2, "base-m", 40.0, 7.5, 3.0), _teacher(2, 70.0),
    ])
    out = tmp_path / "res"
    assert wording_drift.main([f"x:{run}", "--results-dir", str(out)]) == 0
    table = pd.read_csv(out / "wording_drift.csv").set_index(["seed", "base"])
    assert table.loc[(1, "base-m"), "base_converged"]  # a large negative gain is not a convergence failure
    assert not table.loc[(2, "base-m"), "base_converged"]
    assert table.loc[(1, "base-xs"), "teacher_margin"] == 30.0
    assert table.loc[(2, "base-xs"), "teacher_margin"] == 15.0
    assert not table.loc[(2, "base-xs"), "teacher_margin_met"]
    printed = capsys.readouterr().out
    assert "convergence met in 1/2 seeds, teacher margin met in 1/2" in printed


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(SystemExit, match="01_world_calibration_by_seed.csv not found"):
        wording_drift.main([f"x:{tmp_path / 'nothing'}", "--results-dir", str(tmp_path / "res")])
    run = tmp_path / "w"
    (run / "tables").mkdir(parents=True)
    pd.DataFrame([{"seed": 1, "model": "base-xs", "role": "base"}]).to_csv(run / "tables" / "01_world_calibration_by_seed.csv", index=False)
    with pytest.raises(SystemExit, match="lacks columns"):
        wording_drift.main([f"x:{run}", "--results-dir", str(tmp_path / "res")])
    with pytest.raises(SystemExit, match="expected LABEL:RUN_DIR"):
        wording_drift.main(["no-colon", "--results-dir", str(tmp_path / "res")])
    assert not (tmp_path / "res" / "wording_drift.csv").exists()
