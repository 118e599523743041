"""benchmarks/confirm_history.py: several runs' scorecards side by side, read and not recomputed."""

import importlib.util

import pandas as pd
import pytest
from matplotlib.figure import Figure

from imitlib import plots
from imitlib.config import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("confirm_history", PROJECT_ROOT / "benchmarks" / "confirm_history.py")
confirm_history = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confirm_history)


def _card(folder, rows):
    (folder / "tables").mkdir(parents=True)
    base = {"kind": "claim", "p": 0.01, "p_holm": 0.02, "threshold": 0.0, "direction": "above", "unit": "pts",
            "n_seeds": 10, "statement": "x"}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    # a cost row, which has no verdict to set beside the others
    frame = pd.concat([frame, pd.DataFrame([{**base, "claim": "cost:broad", "kind": "cost", "primary": False,
                                             "value": 1e4, "lo": 1e3, "hi": 2e4, "verdict": "measured",
                                             "unit": "tokens"}])])
    frame.to_csv(folder / "tables" / "scorecard.csv", index=False)
    return folder


def test_runs_side_by_side_with_verdict_tallies(tmp_path):
    one = _card(tmp_path / "one", [
        {"claim": "C2", "primary": True, "value": -0.052, "lo": -0.07, "hi": -0.03, "verdict": "reproduced"},
        {"claim": "C7", "primary": False, "value": -0.05, "lo": -0.06, "hi": -0.04, "verdict": "not reproduced"}])
    two = _card(tmp_path / "two", [
        {"claim": "C2", "primary": True, "value": 0.011, "lo": -0.01, "hi": 0.03, "verdict": "inconclusive"},
        {"claim": "C7", "primary": False, "value": -0.049, "lo": -0.06, "hi": -0.04, "verdict": "not reproduced"}])
    history = confirm_history.load([("first", one), ("second", two)])
    assert list(history["run"]) == ["first", "first", "second", "second"]  # cost rows left out
    table = confirm_history.markdown(history)
    lines = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert lines["| C2 (primary)"] == "| C2 (primary) | -5.2 **rep.** | +1.1 inc. | 1 / 0 / 1 |"
    assert lines["| C7"] == "| C7 | -5.0 **not rep.** | -4.9 **not rep.** | 0 / 2 / 0 |"
    assert lines["| primary: rep. / not / inc."].startswith("| primary: rep. / not / inc. | 1 / 0 / 0 | 0 / 0 / 1 |")
    fig = plots.runs_plot(history)
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["C2 (primary)"]  # the primary claims by default
    assert [t.get_text() for t in visible[0].get_yticklabels()] == ["first", "second"]


def test_missing_or_foreign_scorecard_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match="nowhere/tables/scorecard.csv: not found"):
        confirm_history.load([("x", tmp_path / "nowhere")])
    (tmp_path / "odd" / "tables").mkdir(parents=True)
    pd.DataFrame([{"claim": "C2", "kind": "claim"}]).to_csv(tmp_path / "odd" / "tables" / "scorecard.csv", index=False)
    with pytest.raises(SystemExit, match="odd/tables/scorecard.csv: no column primary"):
        confirm_history.load([("x", tmp_path / "odd")])
    with pytest.raises(SystemExit, match="run label given twice: x"):
        confirm_history.load([("x", tmp_path / "odd"), ("x", tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="expected LABEL=FOLDER"):
        confirm_history.main(["no-label", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_every_committed_run_has_a_readable_scorecard():
    present = [(label, PROJECT_ROOT / "outputs" / folder) for label, folder in confirm_history.RUNS
               if (PROJECT_ROOT / "outputs" / folder).exists()]
    history = confirm_history.load(present)
    assert set(history["run"]) == {label for label, _ in present}
    assert (history.groupby("run")["primary"].sum() == 5).all()  # the five pre-registered primary claims
