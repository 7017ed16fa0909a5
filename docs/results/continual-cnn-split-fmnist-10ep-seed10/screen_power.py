"""A screen of NAI's factor u_t^γ on the two tuning orders of Split Fashion-MNIST (session 26).

Trains NAI with ``task_weight="uncertainty"`` and ``task_weight_power`` γ at the λ given, on
orders 0 and 1 of this folder's two-order reading (identity and reverse; ``tune-orders-2``'s
settings and NAI options, the study's seed), as tuning-phase study records appended to
``task-weight-power/screen.jsonl`` (a rerun resumes; a run already in the folder's
``runs.jsonl`` is not trained again). Prints each λ's validation and test ACC per order and
their mean over the two orders, the number the study's tuning ranks by, beside γ 1's best
(λ 3333) and EWC's (λ 11111) from the folder's records. Run from the repository root:

    python docs/results/continual-cnn-split-fmnist-10ep-seed10/screen_power.py GAMMA \\
        LAM1,LAM2,... [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

HERE = Path(__file__).resolve().parent
OUT = HERE / "task-weight-power" / "screen.jsonl"


def main() -> None:
    gamma = float(sys.argv[1])
    lams = [float(v) for v in sys.argv[2].split(",")]
    data = sys.argv[3] if len(sys.argv) > 3 else "../shared/data"
    saved = json.loads((HERE / "tune-orders-2" / "results.json").read_text())
    base = StudySettings.from_saved(saved["settings"])
    nai = {**base.method_nai_options["nai"], "task_weight_power": gamma}
    settings = replace(base, jobs=2, method_nai_options={**base.method_nai_options, "nai": nai})
    b = "split-fashion-mnist"
    orders = [tuple(o) for o in saved["orders"][b][:2]]
    specs = [RunSpec("tune", b, "nai", o,
                     tuple(sorted(settings.hyperparameters_for("nai", {"lam": lam}).items())),
                     settings.epochs[b], "task", "", settings.seed)
             for lam in lams for o in orders]
    folder_runs = HERE / "runs.jsonl"
    append_runs(specs, settings, OUT, data, Path("/tmp/screen-power-ckpt"), jobs=2,
                done_files=[folder_runs])
    recs = {}
    for path in (folder_runs, OUT):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            recs[r["key"]] = r
    print(f"{b} | NAI u_t^{gamma:g} | orders " + ", ".join("-".join(map(str, o)) for o in orders)
          + " | validation / test ACC")
    for spec in specs[::2]:
        rows = [recs[s.key(settings)] for s in specs if s.hyperparameters == spec.hyperparameters]
        cells = " | ".join(f"{r['val_acc']:.2f} / {r['acc']:.2f}" for r in rows)
        val = sum(r["val_acc"] for r in rows) / len(rows)
        print(f"λ {dict(spec.hyperparameters)['lam']:g} | {cells} | mean validation {val:.2f}")
    for method, lam, extra in (("nai", 3333.33, {"task_weight": "uncertainty"}),
                               ("ewc", 11111.1, {})):
        rows = [r for r in recs.values() if r["method"] == method and r["phase"] == "tune"
                and r["hyperparameters"]["lam"] == lam and tuple(r["order"]) in orders
                and r["seed"] == settings.seed and "task_weight_power" not in r["hyperparameters"]
                and all(r["hyperparameters"].get(k) == v for k, v in extra.items())]
        val = sum(r["val_acc"] for r in rows) / max(len(rows), 1)
        print(f"reference: {method} λ {lam:g} ({len(rows)} orders) mean validation {val:.2f}")


if __name__ == "__main__":
    main()
