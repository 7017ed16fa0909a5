"""The tasks' scale after a full task's training: task_scale.py at 10 epochs (session 23).

``task_scale.py`` compared the five Split MNIST tasks after 2 epochs of training alone. The
study trains 10. This script trains the same CNN on each task alone for 10 epochs (Adam 1e-3,
batch 256, seed 0: ``layer_stiffness.train_alone``), then prints per task: the mean
p_y(1 − p_y) and the error rate of its softmax on its training, validation and test examples,
and the mean over each trunk weight tensor (conv1 / conv2 / fc) of EWC's Fisher and of NAI's
Ω without normalisation (the study's NAI, ``norm="none"``, λ = 1) on its first 2,000 training
examples. Output in ``task_scale_10ep.txt`` beside this file. The last line gives, per trunk
layer and on their mean, the slope of log(Fisher / Ω) on log u_t (training split) over the
tasks: the power γ by which EWC spreads the tasks' scales relative to NAI's Ω (session 25; the
fit's line added in session 26). Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/task_scale_10ep.py \
        [DATA_DIR [BENCHMARK]]

BENCHMARK defaults to ``split-mnist``; session 26 ran it with ``split-fashion-mnist`` (output in
``docs/results/continual-cnn-split-fmnist-10ep-seed10/task_scale_10ep.txt``).
"""

from __future__ import annotations

import math
import sys
from statistics import linear_regression

import torch

# this folder's script: the same training and Ω lookup
from layer_stiffness import FISHER_NAI, task_omega, train_alone

from neuron_importance.continual import make_stream
from neuron_importance.continual.strategies import TaskData

NAI = {**FISHER_NAI, "norm": "none"}


def uncertainty(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                head: int) -> tuple[float, float]:
    """Mean p_y(1 − p_y) and error rate of ``model``'s softmax on ``(x, y)``."""
    with torch.no_grad():
        p = torch.softmax(model(x, task=head).double(), 1).gather(1, y.view(-1, 1)).squeeze(1)
    return float((p * (1 - p)).mean()), float((p < 0.5).double().mean())


def main() -> None:
    torch.set_num_threads(1)
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    benchmark = sys.argv[2] if len(sys.argv) > 2 else "split-mnist"
    stream = make_stream(benchmark, data_dir=data_dir)
    print(f"epochs 10 | {benchmark}")
    log_u, log_ratio = [], []
    for ti, task in enumerate(stream.tasks):
        model = train_alone(task, ti, epochs=10)
        x, y = task.x_train[:2000], task.y_train[:2000]
        cells = [task.name]
        for split, xs, ys in (("train", task.x_train, task.y_train),
                              ("val", task.x_val, task.y_val),
                              ("test", task.x_test, task.y_test)):
            u, err = uncertainty(model, xs, ys, ti)
            cells.append(f"{split} u {u:.2e} err {100 * err:.2f}")
            if split == "train":
                log_u.append(math.log(u))
        data = TaskData(x, y, lambda v, t=ti, m=model: m(v, task=t), ti, ti)
        means = {}
        for method, hp in (("ewc", {"lam": 1.0}), ("nai", {"lam": 1.0, **NAI})):
            omega = task_omega(method, hp, model, data)
            means[method] = [v.double().mean().item() for k, v in omega.items()
                             if k.startswith("trunk.") and k.endswith("weight")]
            cells.append(method + " " + " / ".join(f"{m:.2e}" for m in means[method]))
        log_ratio.append([math.log(e / n) for e, n in zip(means["ewc"], means["nai"])])
        print(" | ".join(cells), flush=True)
    slopes = [linear_regression(log_u, [r[k] for r in log_ratio]).slope
              for k in range(len(log_ratio[0]))]
    geo_u = math.exp(sum(log_u) / len(log_u))
    print("slope of log(ewc / nai) on log(train u): " + " / ".join(f"{s:.2f}" for s in slopes)
          + f" | mean {sum(slopes) / len(slopes):.2f} | geometric mean of train u {geo_u:.2e}")


if __name__ == "__main__":
    main()
