"""Figures: each plot function takes analysis tables and returns a drawable matplotlib Figure."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from imitlib import config, plots
from imitlib.study import analysis as report
from imitlib.analysis.metrics import validate_samples
from imitlib.stages import save_figure
from test_analysis_synthetic import make_samples


@pytest.fixture(scope="module")
def result():
    cfg = config.load(["params/smoke.yaml"], {"analysis.bootstrap_samples": 40})
    return report.analyse(validate_samples(make_samples(seeds=(0, 1), n_items=12)), cfg)


def test_figure1_has_three_panels_with_error_bars(result, tmp_path):
    fig = plots.figure1(result.preference, result.benchmarks)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert all(ax.containers for ax in fig.axes)  # error bars drawn on every panel
    assert save_figure(fig, tmp_path / "fig1.png").stat().st_size > 0


def test_figure4_one_column_per_benchmark(result):
    fig = plots.figure4(result.benchmarks)
    assert len(fig.axes) == 2 * result.benchmarks["metric"].nunique()


def test_other_figures(result, tmp_path):
    for fig in (plots.style_factuality_scatter(result.style_factuality),
                plots.preference_control_figure(result.preference),
                plots.style_metrics_figure(result.table2)):
        assert isinstance(fig, Figure)
        assert any(ax.containers for ax in fig.axes)
        save_figure(fig, tmp_path / "f.png")


def _panel(values_per_seed):
    """A rater panel of one base's imitation model at two fact weights, one share per seed (the base's
    parameter count differs by seed, as the world's tokenizers do)."""
    return pd.DataFrame([{"seed": seed, "model_id": f"s{seed}/imitation", "role": "imitation", "base_model": "b-m",
                          "base_params": 10 + seed, "data_kind": "broad", "imitation_tokens": 100, "fact_weight": w, "good_or_better": share,
                          "rated": 10} for seed, share in enumerate(values_per_seed) for w in (0.0, 1.0)])


def _vertical_bars(fig):
    """The y-extents of the first panel's error bars (vertical two-point lines)."""
    lines = fig.axes[0].lines
    return [line.get_ydata() for line in lines if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]


def test_rater_panel_bars_are_the_seed_t_interval_and_the_same_at_every_drawing():
    import io

    from imitlib import plots

    # three seeds at 0.1, 0.2, 0.3 (10, 20, 30%): mean 20, sd 10, t(0.975, 2) = 4.3027 -> 20 -/+ 24.84
    panel = _panel([0.1, 0.2, 0.3])
    fig = plots.rater_panel_figure(panel)
    assert [ax.get_title() for ax in fig.axes] == ["b-m"]  # one panel per base, whatever its size per seed
    bars = _vertical_bars(fig)
    assert len(bars) == 2 and all(min(b) == pytest.approx(20 - 24.842, abs=0.01) and max(b) == pytest.approx(20 + 24.842, abs=0.01)
                        for b in bars)

    def png():
        buffer = io.BytesIO()
        plots.rater_panel_figure(panel).savefig(buffer, format="png")
        return buffer.getvalue()

    assert png() == png()  # a bootstrap would resample the seeds afresh at each drawing


def test_a_single_seed_gets_no_bar():
    from imitlib import plots

    import numpy as np

    bars = _vertical_bars(plots.rater_panel_figure(_panel([0.4])))
    assert len(bars) == 2 and all(np.isnan(b).all() for b in bars)
