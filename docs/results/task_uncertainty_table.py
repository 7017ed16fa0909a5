"""How the u_t NAI measures depends on λ: a table from a folder's run records (session 26).

Every run of NAI with ``task_weight="uncertainty"`` recorded since session 26 carries its
tasks' u_t = mean p_y(1 − p_y) in training order (``task_uncertainty``). This script prints,
for each such run of the folder's ``runs.jsonl`` with the seed given (default: the study's
runs of every seed), its phase, order, λ and γ, each task's u_t (labelled by the task it
belongs to) and the ratio of the largest u_t to the first task's, (max u / u_first)^γ: how
many times more the most weighted task counts than the first-learned one. Reads only: no
training. Run from the repository root:

    python docs/results/task_uncertainty_table.py docs/results/FOLDER [SEED]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    folder = Path(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print("phase | order | λ | γ | u_t (task: u) | max u / first u | its γ-th power")
    for line in (folder / "runs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        u = rec.get("task_uncertainty")
        if not u or (seed is not None and rec["seed"] != seed):
            continue
        hp = rec["hyperparameters"]
        gamma = hp.get("task_weight_power", 1.0)
        ratio = max(u) / u[0]
        cells = " ".join(f"{t}: {v:.1e}" for t, v in zip(rec["order"], u))
        print(f"{rec['phase']} | {'-'.join(map(str, rec['order']))} | {hp['lam']:g} | "
              f"{gamma:g} | {cells} | {ratio:.0f} | {ratio ** gamma:.0f}")


if __name__ == "__main__":
    main()
