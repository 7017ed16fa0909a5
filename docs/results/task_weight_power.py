"""NAI with the uncertainty factor raised to a power γ, tuned on two orders (session 25).

Session 24 found that the uncertainty-weighted NAI (``task_weight="uncertainty"``, the factor
u_t on task t's Ω) forgets as little as EWC on Split MNIST but learns 8 vs 9 worse when it
comes after other pairs. ``task_scale_10ep.txt`` says why it may: EWC's Fisher spreads the
tasks' scales about as u_t^2.5 times NAI's Ω (the slope of log(Fisher / Ω) on log u_t is
2.4–2.6 in every trunk layer), so with γ 1 an easy pair is held some 30× harder, relative to a
hard one, than EWC holds it. This script re-runs a CNN folder's two-order reading
(``tune-orders-2/results.json``: the same settings, grids of the baselines, extension rule and
``tune_orders=2``) with NAI's factor u_t^γ (``task_weight_power``, γ 2.5 fixed from that fit
before any run) and a λ grid moved by u^(1 − γ) (the geometric mean of the five tasks' u,
1.35e-4, puts session 24's λ 300 at about 2e8): 3e7, 1e8, 3e8, 1e9, 3e9. The baselines' runs
are all on record and reused by key; only NAI trains. Then ``second_seed.py --seeds 5``
reads NAI and EWC on 5 training seeds (EWC's runs reused where recorded).

The work happens in a copy (``/tmp/task-weight-power/<folder name>``) holding the folder's
runs; at the end the copy's new records are appended to the folder's ``runs.jsonl`` and
``second-seed-runs.jsonl``, and ``results.json``, ``report.md``, the figures and
``seeds_5.txt`` go to ``FOLDER/task-weight-power/``. Run from the repository root:

    python docs/results/task_weight_power.py docs/results/FOLDER [DATA_DIR] \
        [--gamma G --grid L1,L2,...]

Session 26 ran Split Fashion-MNIST with ``--gamma 1.7 --grid`` set from that benchmark's own
fit (``task_scale_10ep.txt`` in its folder) and from the u_t NAI measures in the study
(``task_uncertainty_probe.py``); without the two options the script runs session 25's plan.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from work_copy import copy_back, start_copy, work_dir

from neuron_importance.experiments.continual import StudySettings, run_study

GAMMA = 2.5
NAI_GRID = [3e7, 1e8, 3e8, 1e9, 3e9]
SEEDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("data_dir", nargs="?", default="../shared/data")
    parser.add_argument("--gamma", type=float, default=GAMMA)
    parser.add_argument("--grid", type=lambda v: [float(x) for x in v.split(",")],
                        default=NAI_GRID, help="NAI's λ grid, comma-separated")
    args = parser.parse_args()
    folder, data = Path(args.folder), args.data_dir
    work = work_dir(folder, "task-weight-power")
    start_copy(folder, work)
    saved = json.loads((folder / "tune-orders-2" / "results.json").read_text())["settings"]
    base = StudySettings.from_saved(saved)
    nai = {**base.method_nai_options["nai"], "task_weight_power": args.gamma}
    settings = replace(base, jobs=2, grids={**base.grids, "nai": {"lam": args.grid}},
                       method_nai_options={**base.method_nai_options, "nai": nai})
    res = run_study(work, settings, data_dir=data, progress=False, log=print)
    print(json.dumps(res["chosen_hyperparameters"]))
    subprocess.run([sys.executable, str(Path(__file__).with_name("second_seed.py")), str(work),
                    data, "--seeds", str(SEEDS)], check=True)
    copy_back(folder, work, folder / "task-weight-power",
              {"results.json", "report.md", f"seeds_{SEEDS}.txt", *res["files"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
