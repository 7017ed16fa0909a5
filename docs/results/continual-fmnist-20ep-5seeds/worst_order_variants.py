"""NAI-TC option screens on Split Fashion-MNIST's worst order (4-2-1-3-0), 5 seeds.

On that order NAI-TC (λ = 0.3, 1 or 3 alike) loses about 1.5 points of task 1 (pullover vs
dress) once shirt vs sneaker and T-shirt vs trouser follow it. This diagnostic runs NAI-TC at
λ = 0.3 with one switch changed at a time (``VARIANTS``) on that order only, seeds 0-4, to see
whether any switch keeps task 1. The ``floor`` variants (a uniform share under Ω, added after
the drift analysis in task1_forgetting.py) also run on order 0. It is a look at the test order, not tuning: nothing here is
chosen by it. Records (study records, phase "main") are appended to worst_order_variants.jsonl
beside this file. Run from the repository root:
``python docs/results/continual-fmnist-20ep-5seeds/worst_order_variants.py [DATA_DIR] [JOBS]``.
"""

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CKPT = Path(tempfile.gettempdir()) / "worst_order_variants_checkpoints"
DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
#: NAIOptions switches screened at the chosen λ = 0.3 on the worst order only
VARIANTS = ({"norm": "max"}, {"acc": "sum"}, {"input_importance": "none"},
            {"floor": 0.3}, {"floor": 1.0}, {"floor": 0.03}, {"floor": 0.1},
            {"floor": 0.01})
#: the orders (indices into the study's orders) each variant runs on: the floor variants also
#: on order 0, to see what the floor costs where nothing is forgotten
ORDER_INDICES = {"floor": (0, 3)}
#: floor = 0.03 had the best order-0 validation ACC of the first four floors, then 0.01 beat
#: it, so each runs on every other order too (5 orders x 5 seeds, λ held at the study's 0.3)
ALL_ORDERS = ({"floor": 0.03}, {"floor": 0.01})


def main() -> None:
    from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

    res = json.loads((HERE / "results.json").read_text())
    st = StudySettings.from_saved(res["settings"])
    orders = res["orders"]["split-fashion-mnist"]
    specs = []
    for variant in VARIANTS:
        hp = tuple(sorted(st.hyperparameters_for("nai-tc", {**variant, "lam": 0.3}).items()))
        picked = (range(len(orders)) if variant in ALL_ORDERS
                  else ORDER_INDICES.get(next(iter(variant)), (3,)))
        specs += [RunSpec("main", "split-fashion-mnist", "nai-tc", tuple(orders[i]), hp,
                          st.epochs["split-fashion-mnist"], "task", "", seed)
                  for i in picked for seed in range(st.seeds)]
    n = append_runs(specs, st, HERE / "worst_order_variants.jsonl", DATA, CKPT, JOBS,
                    done_files=[HERE / "runs.jsonl"])
    print(f"{n} runs trained")


if __name__ == "__main__":
    main()
