"""The single-task reference of Split MNIST: each task trained alone on a fresh network.

The study's protocol (MLP 784-400-400, Adam 1e-3, batch 256, patience 2, best-validation
weights restored), one task per run, seeds 0-2, 6 and 20 epochs. Its mean over the five tasks
is what five separate networks reach, with no interference and no transfer. Run from the
repository root: ``python docs/results/continual-20ep-3seeds/single_task.py [DATA_DIR]``;
writes single_task.jsonl beside this file (session 9: 2-core AMD EPYC, 1 thread per run).
"""

import importlib.util
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
# the training of one task lives in the ceiling script, which runs the same protocol's variants
_spec = importlib.util.spec_from_file_location(
    "ceiling", Path(__file__).resolve().parents[1] / "split-mnist-ceiling" / "ceiling.py")
ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling)


def run(job: tuple[int, int, int]) -> dict:
    task, seed, epochs = job
    return ceiling.train_one_task(task, seed, epochs, DATA)


if __name__ == "__main__":
    jobs = [(t, s, e) for e in (6, 20) for t in range(5) for s in (0, 1, 2)]
    out = Path(__file__).with_name("single_task.jsonl")
    with ProcessPoolExecutor(2) as ex, open(out, "w") as fh:
        for rec in ex.map(run, jobs):
            fh.write(json.dumps(rec) + "\n")
