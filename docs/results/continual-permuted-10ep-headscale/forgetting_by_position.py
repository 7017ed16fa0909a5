"""Forgetting by position in the task order, per method, of a committed study (session 15).

For each method's chosen hyperparameters (``chosen_hyperparameters`` of the folder's
results.json) and each of its runs, the drop R[p][p] − R[T][p] of the task learned at
position p, averaged over the runs, overall and per task order; and the mean learning
accuracy R[p][p]. Run from the repository root:

    python docs/results/continual-permuted-10ep-headscale/forgetting_by_position.py FOLDER [BENCHMARK]
"""

from __future__ import annotations

import json
import statistics as st
import sys
from pathlib import Path


def _drops(runs: list[dict], t: int) -> list[float]:
    """R[p][p] − R[T][p] for positions p = 0 … T−2, averaged over ``runs``."""
    return [st.mean(r["acc_matrix"][p][p] - r["acc_matrix"][t - 1][p] for r in runs)
            for p in range(t - 1)]


def main() -> None:
    folder = Path(sys.argv[1])
    res = json.loads((folder / "results.json").read_text())
    benchmark = sys.argv[2] if len(sys.argv) > 2 else next(iter(res["summary"]))
    chosen = res["chosen_hyperparameters"][benchmark]
    runs = [r for r in res["runs"] if r["benchmark"] == benchmark]
    for method, hp in chosen.items():
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        t = len(mine[0]["order"])
        print(f"{method} {hp}: {len(mine)} runs")
        drop = _drops(mine, t)
        learn = st.mean(r["acc_matrix"][p][p] for r in mine for p in range(t))
        print(f"  drop by position: {' '.join(f'{d:.2f}' for d in drop)}"
              f"  (mean R[p][p] {learn:.2f})")
        for order in sorted({tuple(r["order"]) for r in mine}):
            rs = [r for r in mine if tuple(r["order"]) == order]
            drops = " ".join(f"{d:.2f}" for d in _drops(rs, t))
            acc = st.mean(r["acc"] for r in rs)
            print(f"  order {'-'.join(map(str, order))} ({len(rs)} seeds, ACC {acc:.2f}): {drops}")


if __name__ == "__main__":
    main()
