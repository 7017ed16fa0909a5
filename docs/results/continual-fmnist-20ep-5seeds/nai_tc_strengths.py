"""NAI-TC at the two other strengths of its flat tuning curve, over every order and seed.

With 5 seeds the order-0 validation chose λ = 0.3 for NAI-TC on Split Fashion-MNIST (20
epochs); λ = 1 (the 3-seed choice) and 3 were within 0.09 of it. This script runs NAI-TC at
λ = 1 and 3 on orders 1-4 with seeds 0-4 (order 0 is in the folder's tuning runs), skipping
runs already in runs.jsonl or in the side file, so a hindsight comparison can show what the
choice among near-equal strengths costs in the worst order. The records are study records
(same keys as ``reproduce continual`` would give them, phase "main") appended to
nai_tc_strengths.jsonl beside this file. Run from the repository root:
``python docs/results/continual-fmnist-20ep-5seeds/nai_tc_strengths.py [DATA_DIR] [JOBS]``.
"""

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CKPT = Path(tempfile.gettempdir()) / "nai_tc_strengths_checkpoints"
DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
STRENGTHS = (1.0, 3.0)


def main() -> None:
    from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

    res = json.loads((HERE / "results.json").read_text())
    st = StudySettings.from_saved(res["settings"])
    orders = res["orders"]["split-fashion-mnist"]
    specs = [RunSpec("main", "split-fashion-mnist", "nai-tc", tuple(order),
                     tuple(sorted(st.hyperparameters_for("nai-tc", {"lam": lam}).items())),
                     st.epochs["split-fashion-mnist"], "task", "", seed)
             for lam in STRENGTHS for order in orders[1:] for seed in range(st.seeds)]
    n = append_runs(specs, st, HERE / "nai_tc_strengths.jsonl", DATA, CKPT, JOBS,
                    done_files=[HERE / "runs.jsonl"])
    print(f"{n} runs trained")


if __name__ == "__main__":
    main()
