"""A hindsight screen of NAI with ``task_weight="uncertainty"`` at stronger λ (session 23).

The study of this variant in ``nai-task-weight/`` froze λ 33.3 by order 0's validation ACC,
which is flat from 11 to 300 (99.75–99.78), and lost most on the orders that learn a hard pair
first. This screen runs those two orders (4-3-2-1-0 and 4-3-0-2-1) at λ 100 and 300, chosen
after seeing the study: a diagnosis of whether the per-task factor saves the hard pair at a
strength the protocol did not pick, not a tuned result. Records:
``nai-task-weight-screen.jsonl``. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed15/task_weight_screen.py [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

HERE = Path(__file__).resolve().parent
LAMS = (100.0, 300.0)
ORDERS = ((4, 3, 2, 1, 0), (4, 3, 0, 2, 1))


def main() -> int:
    res = json.loads((HERE / "nai-task-weight" / "results.json").read_text())
    settings = StudySettings.from_saved(res["settings"])
    frozen = res["chosen_hyperparameters"]["split-mnist"]["nai"]
    assert frozen["task_weight"] == "uncertainty"
    specs = [RunSpec("main", "split-mnist", "nai", order,
                     tuple(sorted({**frozen, "lam": lam}.items())),
                     settings.epochs["split-mnist"], "task", "", settings.seed)
             for lam in LAMS for order in ORDERS]
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    n = append_runs(specs, settings, HERE / "nai-task-weight-screen.jsonl", data_dir,
                    HERE / "checkpoints-screens", jobs=2,
                    done_files=[HERE / "runs.jsonl", HERE / "nai-task-weight-screen.jsonl"])
    print(f"trained {n} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
