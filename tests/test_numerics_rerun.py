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
    assert abs(row["swapped_mean"] - (-0.30 - 0.25 + 0.09 + 0.10) / 4) < 1e-12
    # a rerun that changes nothing keeps the verdict
    same = _run(tmp_path / "same", {1: 0.10})
    assert numerics_rerun.compare(confirm, same)[1].set_index("claim").loc["C3", "swapped_verdict"] == "reproduced"
