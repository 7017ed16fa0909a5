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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
CKPT = Path(tempfile.gettempdir()) / "nai_tc_strengths_checkpoints"
DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
STRENGTHS = (1.0, 3.0)


def settings():
    from neuron_importance.experiments.continual import StudySettings

    saved = json.loads((HERE / "results.json").read_text())["settings"]
    names = {f.name for f in fields(StudySettings)}
    return StudySettings(**{k: tuple(v) if k == "hidden" else v
                            for k, v in saved.items() if k in names})


def run(job):
    from neuron_importance.experiments.continual import _execute

    spec, key = job
    return _execute(spec, settings(), DATA, str(CKPT), key)


def main() -> None:
    from neuron_importance.continual import NAI_TC_DEFAULTS
    from neuron_importance.experiments.continual import RunSpec

    st = settings()
    res = json.loads((HERE / "results.json").read_text())
    orders = res["orders"]["split-fashion-mnist"]
    out = HERE / "nai_tc_strengths.jsonl"
    done = set()
    for path in (HERE / "runs.jsonl", out):
        if path.exists():
            done |= {json.loads(line)["key"] for line in path.read_text().splitlines()}
    jobs = []
    for lam in STRENGTHS:
        hp = tuple(sorted({**NAI_TC_DEFAULTS, **st.nai_options_for("nai-tc"),
                           "lam": lam}.items()))
        for order in orders[1:]:
            for seed in range(st.seeds):
                spec = RunSpec("main", "split-fashion-mnist", "nai-tc", tuple(order), hp,
                               st.epochs["split-fashion-mnist"], "task", "", seed)
                key = spec.key(st)
                if key not in done:
                    jobs.append((spec, key))
    print(f"{len(jobs)} runs to do")
    CKPT.mkdir(exist_ok=True)
    with ProcessPoolExecutor(JOBS) as ex, open(out, "a") as fh:
        for rec in ex.map(run, jobs):
            fh.write(json.dumps(rec) + "\n")
            fh.flush()


if __name__ == "__main__":
    main()
