"""The single-task reference of Split MNIST: each task trained alone on a fresh network.

The study's protocol (MLP 784-400-400, Adam 1e-3, batch 256, patience 2, best-validation
weights restored), one task per run, seeds 0-2, 6 and 20 epochs. Its mean over the five tasks
is what five separate networks reach, with no interference and no transfer. Run from the
repository root: ``python docs/results/continual-20ep-3seeds/single_task.py [DATA_DIR]``;
writes single_task.jsonl beside this file (session 9: 2-core AMD EPYC, 1 thread per run).
"""

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"


def run(job: tuple[int, int, int]) -> dict:
    from neuron_importance.continual import TrainConfig, make_stream, run_sequence

    task, seed, epochs = job
    torch.set_num_threads(1)
    stream = make_stream("split-mnist", order=[task] + [t for t in range(5) if t != task],
                         data_dir=DATA)
    stream.tasks = stream.tasks[:1]  # train and test the first task only
    r = run_sequence(stream, "finetune", {}, TrainConfig(epochs=epochs, patience=2, seed=seed))
    return {"benchmark": "split-mnist", "task": task, "seed": seed, "epochs": epochs,
            "acc": r.acc_matrix[0][0], "val_acc": r.val_matrix[0][0],
            "epochs_run": r.epochs_run[0]}


if __name__ == "__main__":
    jobs = [(t, s, e) for e in (6, 20) for t in range(5) for s in (0, 1, 2)]
    out = Path(__file__).with_name("single_task.jsonl")
    with ProcessPoolExecutor(2) as ex, open(out, "w") as fh:
        for rec in ex.map(run, jobs):
            fh.write(json.dumps(rec) + "\n")
