"""NAI at the point the default tuning rule (``--selection best``) picks on this study's order-0
validation (λ 0.3; the one-SE rule picked λ 1), on the other four orders with the study's seeds.

The baselines' points are the same under both rules here, so these 20 runs complete the study
as ``--selection best`` would have run it. Run from the repository root:

    python docs/results/continual-20ep-5seeds-seed10-onese-headwarmup-fisher/best_rule.py

Records go to ``best-rule-lam0.3.jsonl`` beside this file (rerunning skips finished runs).
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
    hp = {**res["chosen_hyperparameters"]["split-mnist"]["nai"], "lam": 0.3}
    seeds = [settings.seed + i for i in range(settings.seeds)]
    specs = [RunSpec("main", "split-mnist", "nai", tuple(order), tuple(sorted(hp.items())),
                     settings.epochs["split-mnist"], "task", "", seed)
             for order in res["orders"]["split-mnist"][1:] for seed in seeds]
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    n = append_runs(specs, settings, HERE / "best-rule-lam0.3.jsonl", data_dir,
                    HERE / "checkpoints-best-rule", jobs=settings.jobs,
                    done_files=[HERE / "runs.jsonl"])
    print(f"trained {n} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
