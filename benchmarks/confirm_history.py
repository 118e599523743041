"""Every confirmatory run's scorecard side by side: each claim's seed mean, interval and verdict per run.

Reads ``tables/scorecard.csv`` of each run folder (the committed confirm runs by default, in the order
they were built, rebuilds on another machine or with other kernels beside the run they rebuild) and
writes ``confirm_history.csv`` (one row per run and claim), ``confirm_history.md`` (claims × runs, with
how many runs gave each verdict) and ``confirm_history.png`` (the primary claims' intervals per run)
into ``--out`` (default ``outputs/benchmarks``). It computes no statistic: every number and verdict is
the run's own scorecard.

    python benchmarks/confirm_history.py                      # the committed runs
    python benchmarks/confirm_history.py "world v8=outputs/confirm_v8" "rebuild=/tmp/other/outputs/confirm_v8"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from imitlib.config import PROJECT_ROOT

#: (label, folder under outputs/): the committed confirm runs, oldest world first.
RUNS = [
    ("world v2", "confirm"),
    ("world v2, 2nd machine", "confirm_epyc"),
    ("world v3", "confirm_v3"),
    ("world v4", "confirm_v4"),
    ("world v5", "confirm_v5"),
    ("world v5, AVX2 rebuild", "confirm_v5_avx2"),
    ("world v6", "confirm_v6"),
    ("world v7", "confirm_v7"),
    ("world v8", "confirm_v8"),
]
COLUMNS = ["claim", "primary", "value", "lo", "hi", "p", "p_holm", "threshold", "direction", "verdict", "unit",
           "n_seeds"]
SHORT = {"reproduced": "**rep.**", "not reproduced": "**not rep.**", "inconclusive": "inc.",
         "not computable": "n/c"}


def load(runs: list[tuple[str, Path]]) -> pd.DataFrame:
    """One row per run and tested claim (``kind == claim``), in the runs' order; ``run`` is the label."""
    labels = [label for label, _ in runs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise SystemExit(f"run label given twice: {', '.join(repeated)} (each run needs its own label)")
    frames = []
    for label, folder in runs:
        path = Path(folder) / "tables" / "scorecard.csv"
        if not path.exists():
            raise SystemExit(f"{path}: not found (is {folder} a finished run? run its 05_analysis first)")
        card = pd.read_csv(path)
        missing = [c for c in ["kind", *COLUMNS] if c not in card.columns]
        if missing:
            raise SystemExit(f"{path}: no column {', '.join(missing)} (not a scorecard of this study)")
        card = card[card["kind"] == "claim"][COLUMNS].copy()
        card.insert(0, "run", label)
        card.insert(1, "folder", str(folder))
        frames.append(card)
    if not frames:
        raise SystemExit("no run given")
    return pd.concat(frames, ignore_index=True)


def _cell(row: pd.Series) -> str:
    scale = 1.0 if row["unit"] == "tokens" else 100.0
    if pd.isna(row["value"]):
        return SHORT.get(row["verdict"], row["verdict"])
    return f"{scale * row['value']:+.1f} {SHORT.get(row['verdict'], row['verdict'])}"


def _tally(verdicts: pd.Series) -> str:
    """"reproduced / not reproduced / inconclusive", counted."""
    counts = verdicts.value_counts()
    return " / ".join(str(int(counts.get(v, 0))) for v in ("reproduced", "not reproduced", "inconclusive"))


def markdown(history: pd.DataFrame) -> str:
    """Claims × runs (seed mean in % or pts, verdict), then per claim how many runs gave each verdict,
    and per run its primary verdicts counted."""
    runs = list(dict.fromkeys(history["run"]))
    claims = list(dict.fromkeys(history["claim"]))
    lines = ["| claim | " + " | ".join(runs) + " | reproduced / not / inconclusive |",
             "|---|" + "---|" * len(runs) + "---|"]
    for claim in claims:
        rows = history[history["claim"] == claim].set_index("run")
        primary = bool(rows["primary"].any())
        cells = [_cell(rows.loc[run]) if run in rows.index else "—" for run in runs]
        lines.append(f"| {claim}{' (primary)' if primary else ''} | " + " | ".join(cells)
                     + f" | {_tally(rows['verdict'])} |")
    primary = history[history["primary"].astype(bool)]
    tallies = [_tally(primary.loc[primary["run"] == run, "verdict"]) for run in runs]
    lines.append("| primary: rep. / not / inc. | " + " | ".join(tallies) + " | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="LABEL=FOLDER",
                        help="runs to set side by side (default: the committed confirm runs)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "benchmarks")
    args = parser.parse_args(argv)
    runs: list[tuple[str, Path]] = []
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"{spec!r}: expected LABEL=FOLDER")
        runs.append((label, Path(folder)))
    if not runs:
        runs = [(label, PROJECT_ROOT / "outputs" / folder) for label, folder in RUNS]
    history = load(runs)
    from imitlib import plots
    from imitlib.stages import atomic_path, save_figure

    written = history.assign(folder=[Path(f).name for f in history["folder"]])
    with atomic_path(args.out / "confirm_history.csv") as tmp:
        written.to_csv(tmp, index=False)
    table = markdown(history)
    with atomic_path(args.out / "confirm_history.md") as tmp:
        Path(tmp).write_text(table)

    save_figure(plots.runs_plot(history), args.out / "confirm_history.png")
    print(table, end="")
    print(f"\nwrote {args.out / 'confirm_history.csv'}, .md and .png")


if __name__ == "__main__":
    main()
