"""Figures: each plot function takes analysis tables and returns a drawable matplotlib Figure."""

from __future__ import annotations

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
