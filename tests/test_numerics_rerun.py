"""benchmarks/numerics_rerun.py: shifts per rerun seed, and primary verdicts with those seeds swapped in."""

import importlib.util
import json
from pathlib import Path

import pandas as pd

from imitlib.config import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("numerics_rerun", PROJECT_ROOT / "benchmarks" / "numerics_rerun.py")
numerics_rerun = importlib.util.module_from_spec(spec)
spec.loader.exec_module(numerics_rerun)


def _run(folder: Path, effects: dict[int, float]) -> Path:
    (folder / "tables").mkdir(parents=True)
    pd.DataFrame([{"claim": "C3", "kind": "claim", "seed": s, "effect": e} for s, e in effects.items()]).to_csv(
        folder / "tables" / "claims_by_seed.csv", index=False)
    pd.DataFrame([{"claim": "C3", "kind": "claim", "primary": True, "value": sum(effects.values()) / len(effects),
                   "lo": 0.05, "hi": 0.15, "threshold": 0.0, "direction": "above", "verdict": "reproduced",
                   "seed_effects": json.dumps({str(s): e for s, e in effects.items()})}]).to_csv(
        folder / "tables" / "scorecard.csv", index=False)
    return folder


def test_shift_and_swapped_verdict(tmp_path):
    confirm = _run(tmp_path / "confirm", {1: 0.10, 2: 0.11, 3: 0.09, 4: 0.10})
    # the other build moves seeds 1 and 2 far below zero: the swapped claim loses its verdict
    rerun = _run(tmp_path / "rerun", {1: -0.30, 2: -0.25})
    shifts, swapped = numerics_rerun.compare(confirm, rerun)
    assert sorted(shifts["seed"]) == [1, 2]
    assert shifts.set_index("seed").loc[1, "shift"] == -0.40
    assert shifts["interval_width"].round(10).eq(0.10).all()
    row = swapped.set_index("claim").loc["C3"]
    assert row["confirm_verdict"] == "reproduced" and row["swapped_verdict"] == "inconclusive"
    assert not row["same_verdict"]
    assert abs(row["swapped_mean"] - (-0.30 - 0.25 + 0.09 + 0.10) / 4) < 1e-12
    # a rerun that changes nothing keeps the verdict
    same = _run(tmp_path / "same", {1: 0.10})
    kept = numerics_rerun.compare(confirm, same)[1].set_index("claim").loc["C3"]
    assert kept["swapped_verdict"] == "reproduced" and kept["same_verdict"]


def test_whole_rerun_scorecards_side_by_side(tmp_path):
    confirm = _run(tmp_path / "confirm", {1: 0.10, 2: 0.11, 3: 0.09})
    rerun = _run(tmp_path / "rerun", {1: 0.02, 2: 0.11, 3: -0.05})
    for folder, p, verdict in ((confirm, 0.01, "reproduced"), (rerun, 0.4, "inconclusive")):
        card = pd.read_csv(folder / "tables" / "scorecard.csv").assign(p=p, p_holm=p, verdict=verdict)
        card.to_csv(folder / "tables" / "scorecard.csv", index=False)
    shifts, _ = numerics_rerun.compare(confirm, rerun)
    both = numerics_rerun.scorecards(confirm, rerun, shifts).set_index("claim").loc["C3"]
    assert both["confirm_verdict"] == "reproduced" and both["rerun_verdict"] == "inconclusive"
    assert not both["same_verdict"] and both["seeds"] == 3
    assert abs(both["shift_max"] - 0.14) < 1e-12 and abs(both["shift_median"] - 0.08) < 1e-12
    assert both["rerun_p"] == 0.4
    # a rerun of a few seeds without its own analysis has no scorecard to set beside
    (rerun / "tables" / "scorecard.csv").unlink()
    assert numerics_rerun.scorecards(confirm, rerun, shifts) is None
