"""A screen after the study: NAI with ``input_side="activation"`` and ``norm="task"``, λ 0.1.

Ω_ij = E[c_i²]·E[a_j²] (the output unit's squared conductance times the input unit's
activation moment, the two factors of EWC's Fisher), divided by one number per task. Unlike
``norm="network"``, this keeps the unnormalised layer profile (close to EWC's) and gives every
task the same overall weight. Order 0 and the reverse order, seed 10, the study's settings; a
diagnosis written after seeing the study's test accuracies, not a tuned result. Run from the
repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/task_norm_screen.py [DATA_DIR]

Records go to ``nai-task-norm-screen.jsonl`` beside this file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

HERE = Path(__file__).resolve().parent


def main() -> int:
    res = json.loads((HERE / "results.json").read_text())
    settings = StudySettings.from_saved(res["settings"])
    hp = {**res["chosen_hyperparameters"]["split-mnist"]["nai"], "norm": "task",
          "input_side": "activation", "lam": 0.1}
    orders = res["orders"]["split-mnist"]
    specs = [RunSpec("main", "split-mnist", "nai", tuple(order), tuple(sorted(hp.items())),
                     settings.epochs["split-mnist"], "task", "", settings.seed)
             for order in (orders[0], orders[1])]
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    n = append_runs(specs, settings, HERE / "nai-task-norm-screen.jsonl", data_dir,
                    HERE / "checkpoints-task-norm", jobs=2, done_files=[HERE / "runs.jsonl"])
    print(f"trained {n} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
