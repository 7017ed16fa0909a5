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

    python docs/results/task_weight_power.py docs/results/FOLDER [DATA_DIR]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from neuron_importance.experiments.continual import StudySettings, run_study

RUN_FILES = ("runs.jsonl", "second-seed-runs.jsonl")
#: runs of other readings kept in subfolders, read so that they are reused, not retrained
EXTRA_RUNS = ("nai-task-weight-one-se/runs.jsonl",)
GAMMA = 2.5
NAI_GRID = [3e7, 1e8, 3e8, 1e9, 3e9]
SEEDS = 5


def main() -> int:
    folder = Path(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
    work = Path("/tmp/task-weight-power") / folder.name
    work.mkdir(parents=True, exist_ok=True)
    # the copy starts as the folder's records (once: a rerun resumes the copy)
    for name in RUN_FILES:
        if not (work / name).exists():
            text = (folder / name).read_text() if (folder / name).exists() else ""
            if name == "runs.jsonl":
                text += "".join((folder / e).read_text() for e in EXTRA_RUNS
                                if (folder / e).exists())
            (work / name).write_text(text)
            (work / f"{name}.start").write_text(str(len(text.splitlines())))
    saved = json.loads((folder / "tune-orders-2" / "results.json").read_text())["settings"]
    base = StudySettings.from_saved(saved)
    nai = {**base.method_nai_options["nai"], "task_weight_power": GAMMA}
    settings = replace(base, jobs=2, grids={**base.grids, "nai": {"lam": NAI_GRID}},
                       method_nai_options={**base.method_nai_options, "nai": nai})
    res = run_study(work, settings, data_dir=data, progress=False, log=print)
    print(json.dumps(res["chosen_hyperparameters"]))
    subprocess.run([sys.executable, str(Path(__file__).with_name("second_seed.py")), str(work),
                    data, "--seeds", str(SEEDS)], check=True)
    out = folder / "task-weight-power"
    out.mkdir(exist_ok=True)
    # the copy's runs.jsonl holds every run the folder had; only its new lines go back (below)
    for name in {"results.json", "report.md", f"seeds_{SEEDS}.txt", *res["files"]} - {
            "runs.jsonl"}:
        shutil.copy(work / name, out / name)
    if (work / "copied-back").exists():  # a rerun after a finished one appends nothing twice
        return 0
    for name in RUN_FILES:
        start = int((work / f"{name}.start").read_text())
        new = (work / name).read_text().splitlines()[start:]
        if new:
            with open(folder / name, "a") as fh:
                fh.write("\n".join(new) + "\n")
        print(f"{name}: {len(new)} new records")
    (work / "copied-back").touch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
