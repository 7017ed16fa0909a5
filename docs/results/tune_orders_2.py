"""Re-tune every method of a CNN study on two orders, identity and reverse (session 24).

Sessions 17–23 found that order 0's validation ACC cannot see what a weak penalty costs when
a hard task is learned early, and asked whether the one-order tuning protocol, not the
method, decides the comparison with EWC. This script answers it for one study folder: it
re-runs that folder's ``nai-task-weight/`` reading (same settings, grids, extension rule and
NAI variant: the uncertainty-weighted NAI of session 23) with ``tune_orders=2``, the mean
validation ACC of orders 0 and 1, for every method alike; the frozen points run on the 5
orders (the study's main phase; orders 0 and 1 reuse the tuning runs), and a second training
seed is trained for every method at its new point (``second_seed.py``). Fixed before the
first run: this protocol, the 2 seeds, and the folders, in the order seed 10, seed 15, Split
Fashion-MNIST.

The work happens in a copy (``/tmp/tune-orders-2/<folder name>``) holding the folder's runs, so
every run already recorded is reused by key. At the end the runs the copy added are appended
to the folder's ``runs.jsonl`` (tuning and main phases) and ``second-seed-runs.jsonl`` (the
second seed), and ``results.json``, ``report.md``, the figures and ``second_seed.txt`` go to
``FOLDER/tune-orders-2/`` (the two Split MNIST folders ran before the copy's whole
``runs.jsonl`` was left out of that list; the duplicate was deleted there). Run from the
repository root:

    python docs/results/tune_orders_2.py docs/results/FOLDER [DATA_DIR]
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from work_copy import copy_back, folder_data_work, start_copy

from neuron_importance.experiments.continual import StudySettings, run_study


def main() -> int:
    folder, data, work = folder_data_work(sys.argv, "tune-orders-2")
    start_copy(folder, work)
    saved = json.loads((folder / "nai-task-weight" / "results.json").read_text())["settings"]
    settings = replace(StudySettings.from_saved(saved), tune_orders=2, jobs=2)
    res = run_study(work, settings, data_dir=data, progress=False, log=print)
    print(json.dumps(res["chosen_hyperparameters"]))
    subprocess.run([sys.executable, str(Path(__file__).with_name("second_seed.py")), str(work),
                    data, "si,mas"], check=True)
    copy_back(folder, work, folder / "tune-orders-2",
              {"results.json", "report.md", "second_seed.txt", *res["files"]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
