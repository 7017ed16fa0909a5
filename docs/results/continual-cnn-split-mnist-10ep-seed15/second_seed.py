"""A second training seed for EWC and NAI on seed 15's five orders (session 21).

The study in this folder ran one training seed per order, so its EWC-vs-NAI comparison (mean
99.86 vs 99.77, std 0.012 vs 0.038) carries one seed's noise. This script trains seed 16 for
the two methods at their frozen points (``results.json``: EWC λ 1000; NAI ``norm="network"``,
``anchor="task"``, λ 0.1), no re-tuning, appends the records to ``second-seed-runs.jsonl``
(each a run a ``--seeds 2`` study would reuse), and writes ``second_seed.txt``: per order the
ACC of each seed and their mean, then mean ± std (ddof 0, over the orders' 2-seed means) and
worst, and the per-order differences NAI − EWC. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed15/second_seed.py [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

HERE = Path(__file__).resolve().parent
METHODS = ("ewc", "nai")
RECORDS = HERE / "second-seed-runs.jsonl"


def main() -> int:
    res = json.loads((HERE / "results.json").read_text())
    settings = StudySettings.from_saved(res["settings"])
    chosen = res["chosen_hyperparameters"]["split-mnist"]
    orders = [tuple(o) for o in res["orders"]["split-mnist"]]
    seeds = (settings.seed, settings.seed + 1)
    specs = [RunSpec("main", "split-mnist", m, o, tuple(sorted(chosen[m].items())),
                     settings.epochs["split-mnist"], "task", "", seeds[1])
             for m in METHODS for o in orders]
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    n = append_runs(specs, settings, RECORDS, data_dir, HERE / "checkpoints-second-seed",
                    jobs=2, done_files=[HERE / "runs.jsonl", RECORDS])
    print(f"trained {n} runs")
    recs = [json.loads(line) for path in (HERE / "runs.jsonl", RECORDS)
            for line in path.read_text().splitlines()]
    acc: dict[tuple[str, tuple[int, ...], int], float] = {}
    for r in recs:
        if r["phase"] == "main" and r["method"] in METHODS and r["scenario"] == "task":
            if r["hyperparameters"] == chosen[r["method"]]:
                acc[(r["method"], tuple(r["order"]), r.get("seed", 0))] = r["acc"]
    lines = ["order | " + " | ".join(f"{m} seed {s}" for m in METHODS for s in seeds)
             + " | " + " | ".join(f"{m} mean" for m in METHODS) + " | nai − ewc"]
    means = {m: [] for m in METHODS}
    for o in orders:
        row = [acc[(m, o, s)] for m in METHODS for s in seeds]
        mm = {m: float(np.mean([acc[(m, o, s)] for s in seeds])) for m in METHODS}
        for m in METHODS:
            means[m].append(mm[m])
        lines.append("-".join(map(str, o)) + " | " + " | ".join(f"{v:.2f}" for v in row)
                     + " | " + " | ".join(f"{mm[m]:.2f}" for m in METHODS)
                     + f" | {mm['nai'] - mm['ewc']:+.2f}")
    for m in METHODS:
        v = np.array(means[m])
        lines.append(f"{m}: 2-seed mean {v.mean():.3f} ± {v.std():.3f} (worst {v.min():.3f}); "
                     f"seed {seeds[1]} alone "
                     f"{np.mean([acc[(m, o, seeds[1])] for o in orders]):.3f}")
    d = np.array(means["nai"]) - np.array(means["ewc"])
    lines.append(f"nai − ewc per order: mean {d.mean():+.3f}, orders where NAI ≥ EWC: "
                 f"{int((d >= 0).sum())} of {len(d)}")
    text = "\n".join(lines) + "\n"
    (HERE / "second_seed.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
