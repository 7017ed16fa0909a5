"""Does a protocol change lift Split MNIST's single-task ceiling above the 99.7 goal?

Session 9 measured what five separate networks reach on the five Split MNIST tasks under the
study's protocol (MLP 784-400-400, no dropout, 20 epochs, patience 2): 99.71, the goal itself.
A regulariser can reach the goal only below that ceiling, so this script trains each task
alone on a fresh network under protocol variants that every method of a study would share
(dropout after each hidden layer, wider layers) and records the test accuracy, seeds 0-2.

Run from the repository root:
``python docs/results/split-mnist-ceiling/ceiling.py [DATA_DIR] [WORKERS]``; appends to
ceiling.jsonl beside this file and skips variants already recorded there.
"""

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
EPOCHS = 20
#: (dropout, hidden widths)
VARIANTS = [(0.2, (400, 400)), (0.5, (400, 400)), (0.0, (1000, 1000))]


def train_one_task(task: int, seed: int, epochs: int, data_dir: str, dropout: float = 0.0,
                   hidden: tuple[int, ...] = (400, 400)) -> dict:
    """One Split MNIST task alone on a fresh network; also used by session 9's single_task.py."""
    from neuron_importance.continual import TrainConfig, make_stream, run_sequence

    torch.set_num_threads(1)
    stream = make_stream("split-mnist", order=[task] + [t for t in range(5) if t != task],
                         data_dir=data_dir)
    stream.tasks = stream.tasks[:1]  # train and test the first task only
    cfg = TrainConfig(epochs=epochs, patience=2, seed=seed, dropout=dropout, hidden=hidden)
    r = run_sequence(stream, "finetune", {}, cfg)
    return {"benchmark": "split-mnist", "task": task, "seed": seed, "epochs": epochs,
            "acc": r.acc_matrix[0][0], "val_acc": r.val_matrix[0][0],
            "epochs_run": r.epochs_run[0]}


def run(job: tuple[int, int, float, tuple[int, ...]]) -> dict:
    task, seed, dropout, hidden = job
    rec = train_one_task(task, seed, EPOCHS, DATA, dropout, hidden)
    return {**rec, "dropout": dropout, "hidden": list(hidden)}


if __name__ == "__main__":
    out = Path(__file__).with_name("ceiling.jsonl")
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["seed"], r["dropout"], tuple(r["hidden"])))
    jobs = [(t, s, d, h) for d, h in VARIANTS for s in (0, 1, 2) for t in range(5)
            if (t, s, d, h) not in done]
    with ProcessPoolExecutor(WORKERS) as ex, open(out, "a") as fh:
        for rec in ex.map(run, jobs):
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
