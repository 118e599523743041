"""How far a numerically different build moves the confirm run's effects and verdicts.

Reads the per-seed claim effects (``tables/claims_by_seed.csv``) of the confirm run and of a rerun of
some of its seeds in another build (for example ``ATEN_CPU_CAPABILITY=avx2``, the kernels of a machine
without AVX-512), and reports, per claim and rerun seed, how far the effect moved next to the width of
the claim's confirm interval; then the primary claims' verdicts with the rerun seeds' effects swapped
in (same t-test and Holm correction as the scorecard). When the rerun is a whole run with its own
scorecard (every seed, on another machine, say), both scorecards' claim rows side by side as well.
Writes ``<rerun>/tables/numerics.csv``, ``numerics_verdicts.csv`` (and ``numerics_scorecards.csv``) and
prints markdown tables.

    python benchmarks/numerics_rerun.py outputs/confirm outputs/confirm_avx2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from imitlib.analysis.stats import holm, seed_inference, seed_verdict


def _effects(run: Path) -> pd.DataFrame:
    path = run / "tables" / "claims_by_seed.csv"
    if not path.exists():
        raise SystemExit(f"{path}: not found (run the analysis of {run.name} first)")
    return pd.read_csv(path)


def compare(confirm: Path, rerun: Path, confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per claim and rerun seed: effect in each build, shift, interval width; primary verdicts swapped)."""
    base, other = _effects(confirm), _effects(rerun)
    card = pd.read_csv(confirm / "tables" / "scorecard.csv").set_index("claim")
    card = card[card["kind"] == "claim"]
    both = base.merge(other, on=["claim", "seed"], suffixes=("_confirm", "_rerun"))
    if both.empty:
        raise SystemExit(f"{rerun}: no seed in common with {confirm}")
    both = both[both["claim"].isin(card.index)]
    shifts = pd.DataFrame({"claim": both["claim"], "seed": both["seed"], "confirm": both["effect_confirm"],
                           "rerun": both["effect_rerun"], "shift": both["effect_rerun"] - both["effect_confirm"],
                           "interval_width": (card["hi"] - card["lo"]).reindex(both["claim"]).to_numpy()})
    shifts = shifts.reset_index(drop=True)
    inferences = []
    for claim, row in card[card["primary"]].iterrows():
        effects = json.loads(row["seed_effects"])
        for seed, effect in both.loc[both["claim"] == claim, ["seed", "effect_rerun"]].itertuples(index=False):
            if str(seed) in effects:
                effects[str(seed)] = float(effect)
        inference = seed_inference(np.array(list(effects.values()), dtype=float), row["threshold"], confidence)
        inferences.append((claim, row, inference))
    adjusted = holm(np.array([inf.p for _, _, inf in inferences]))
    swapped = []
    for (claim, row, inf), p in zip(inferences, adjusted):
        swapped.append({"claim": claim, "confirm_mean": row["value"], "confirm_verdict": row["verdict"],
                        "swapped_mean": inf.mean, "swapped_lo": inf.lo, "swapped_hi": inf.hi, "swapped_p_holm": p,
                        "swapped_verdict": seed_verdict(inf, p, row["threshold"], row["direction"], 1 - confidence)})
        swapped[-1]["same_verdict"] = swapped[-1]["swapped_verdict"] == row["verdict"]
    return shifts, pd.DataFrame(swapped)


def scorecards(confirm: Path, rerun: Path, shifts: pd.DataFrame) -> pd.DataFrame | None:
    """Every claim row of both builds' own scorecards side by side (None when the rerun has no scorecard,
    e.g. a rerun of a few seeds whose analysis was not run), with the median and largest per-seed shift
    (``shifts``: the first table of :func:`compare`)."""
    if not (rerun / "tables" / "scorecard.csv").exists():
        return None
    cards = [pd.read_csv(run / "tables" / "scorecard.csv") for run in (confirm, rerun)]
    cards = [card[card["kind"] == "claim"].set_index("claim") for card in cards]
    size = shifts.assign(absolute=shifts["shift"].abs()).groupby("claim")["absolute"].agg(["count", "median", "max"])
    rows = []
    for claim, first in cards[0].iterrows():
        if claim not in cards[1].index:
            continue
        second = cards[1].loc[claim]
        row = {"claim": claim, "primary": bool(first["primary"])}
        for label, card in (("confirm", first), ("rerun", second)):
            row.update({f"{label}_mean": card["value"], f"{label}_lo": card["lo"], f"{label}_hi": card["hi"],
                        f"{label}_p": card["p_holm"] if card["primary"] else card["p"],
                        f"{label}_verdict": card["verdict"]})
        row.update(same_verdict=first["verdict"] == second["verdict"],
                   seeds=int(size["count"].get(claim, 0)), shift_median=size["median"].get(claim, np.nan),
                   shift_max=size["max"].get(claim, np.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("confirm", type=Path)
    parser.add_argument("rerun", type=Path)
    args = parser.parse_args()
    shifts, swapped = compare(args.confirm, args.rerun)
    out = args.rerun / "tables"
    shifts.to_csv(out / "numerics.csv", index=False)
    swapped.to_csv(out / "numerics_verdicts.csv", index=False)
    print("| claim | seed | confirm build | other build | shift | confirm interval width |")
    print("|---|---|---|---|---|---|")
    for r in shifts[~shifts["claim"].str.startswith("cost")].itertuples():
        print(f"| {r.claim} | {r.seed} | {100 * r.confirm:+.1f} | {100 * r.rerun:+.1f} | {100 * r.shift:+.1f} | "
              f"{100 * r.interval_width:.1f} |")
    print()
    print("| primary claim | confirm mean, verdict | with the rerun seeds swapped in | Holm p | verdict | same verdict |")
    print("|---|---|---|---|---|---|")
    for r in swapped.itertuples():
        print(f"| {r.claim} | {100 * r.confirm_mean:+.1f}, {r.confirm_verdict} | {100 * r.swapped_mean:+.1f} "
              f"[{100 * r.swapped_lo:+.1f}, {100 * r.swapped_hi:+.1f}] | {r.swapped_p_holm:.3g} | {r.swapped_verdict} | "
              f"{'yes' if r.same_verdict else '**no**'} |")
    print()
    print(f"{int(swapped['same_verdict'].sum())} of {len(swapped)} primary verdicts are the same in both builds.")
    both = scorecards(args.confirm, args.rerun, shifts)
    if both is not None:
        both.to_csv(out / "numerics_scorecards.csv", index=False)
        print()
        print(f"| claim | {args.confirm.name} | {args.rerun.name} | same verdict | per-seed shift, median / max |")
        print("|---|---|---|---|---|")
        for r in both.itertuples():
            cells = [f"{100 * getattr(r, f'{side}_mean'):+.1f} [{100 * getattr(r, f'{side}_lo'):+.1f}, "
                     f"{100 * getattr(r, f'{side}_hi'):+.1f}], p {getattr(r, f'{side}_p'):.3g}, "
                     f"{getattr(r, f'{side}_verdict')}" for side in ("confirm", "rerun")]
            print(f"| {r.claim}{' (primary)' if r.primary else ''} | {cells[0]} | {cells[1]} | "
                  f"{'yes' if r.same_verdict else '**no**'} | {100 * r.shift_median:.1f} / {100 * r.shift_max:.1f} |")


if __name__ == "__main__":
    main()
