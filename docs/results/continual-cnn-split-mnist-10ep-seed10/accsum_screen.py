"""A screen after the study: NAI (norm='network', λ 0.1) with acc='sum' instead of 'decay'.

With the CNN, NAI forgets 8 vs 9 when it is learned first (the reverse order). EWC, which
keeps every task's Fisher undecayed, does not. This runs NAI with ``acc="sum"`` (no decay of
older tasks' importances) on order 0 and on the reverse order, seed 10, under the study's
settings. It is a diagnosis for the next session, chosen after seeing the reverse order's test
accuracy, not a tuned result. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/accsum_screen.py [DATA_DIR]

Records go to ``nai-accsum-screen.jsonl`` beside this file.
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
    hp = {**res["chosen_hyperparameters"]["split-mnist"]["nai"], "acc": "sum"}
    assert hp["norm"] == "network", "run after the study is read with norm='network'"
    orders = res["orders"]["split-mnist"]
    specs = [RunSpec("main", "split-mnist", "nai", tuple(order), tuple(sorted(hp.items())),
                     settings.epochs["split-mnist"], "task", "", settings.seed)
             for order in (orders[0], orders[1])]
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    n = append_runs(specs, settings, HERE / "nai-accsum-screen.jsonl", data_dir,
                    HERE / "checkpoints-accsum", jobs=2, done_files=[HERE / "runs.jsonl"])
    print(f"trained {n} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
