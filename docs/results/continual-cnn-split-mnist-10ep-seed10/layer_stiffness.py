"""How hard each penalty holds each layer of the CNN: λ × mean Ω of each weight tensor.

Trains the CNN of the study (conv 16, 32 + fc 256) on Split MNIST's first task (0 vs 1) for
2 epochs, seed 0, then computes EWC's Fisher and NAI's Ω on 2,000 training examples, at the
strengths the study froze (EWC λ 300; NAI with per-layer mean normalisation λ 0.03, without
normalisation λ 3, with one scale per task for the whole trunk λ 0.1, and with the input
side's activation moments and one scale per task on Ω λ 0.1). Its output is in
``layer_stiffness.txt`` beside this file. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/layer_stiffness.py [DATA_DIR]
"""

from __future__ import annotations

import sys

import torch

from neuron_importance.continual import ContinualCNN, Task, make_strategy, make_stream
from neuron_importance.continual.strategies import TaskData

FISHER_NAI = dict(source="conductance", conductance_stat="sq", conductance_target="centred",
                  conductance_weight="fisher", n_samples=2000)


def train_alone(task: Task, head: int, epochs: int = 2) -> ContinualCNN:
    """The study's CNN trained on ``task`` alone through head ``head`` (Adam 1e-3, batch 256,
    seed 0), in eval mode. Shared with ``task_scale.py``."""
    torch.manual_seed(0)
    model = ContinualCNN(784, (16, 32), (256,), (2,) * 5)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(task.x_train))
        for i in range(0, len(perm), 256):
            idx = perm[i:i + 256]
            loss = torch.nn.functional.cross_entropy(model(task.x_train[idx], task=head),
                                                     task.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def first_task(data_dir: str) -> tuple[ContinualCNN, TaskData]:
    """The CNN trained on 0 vs 1 alone and that task's first 2,000 training examples."""
    task = make_stream("split-mnist", data_dir=data_dir).tasks[0]
    model = train_alone(task, 0)
    x, y = task.x_train[:2000], task.y_train[:2000]
    return model, TaskData(x, y, lambda v: model(v, task=0), 0, 0)


def task_omega(method: str, hp: dict, model: ContinualCNN, data: TaskData) -> dict:
    """The finished task's Ω (EWC: its Fisher) of ``make_strategy(method, hp)``."""
    s = make_strategy(method, hp)
    s.after_task(model, data)
    return s.terms[-1][1] if method == "ewc" else s.omega


def main() -> None:
    torch.set_num_threads(1)
    model, data = first_task(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    print("penalty | " + " | ".join(n for n, _ in model.trunk.named_parameters()
                                     if n.endswith("weight")))
    for label, method, hp in [("EWC λ 300", "ewc", {"lam": 300.0}),
                              ("NAI, norm mean, λ 0.03", "nai", {"lam": 0.03, **FISHER_NAI}),
                              ("NAI, norm none, λ 3", "nai",
                               {"lam": 3.0, **FISHER_NAI, "norm": "none"}),
                              ("NAI, norm network, λ 0.1", "nai",
                               {"lam": 0.1, **FISHER_NAI, "norm": "network"}),
                              ("NAI, norm task, input side activation, λ 0.1", "nai",
                               {"lam": 0.1, **FISHER_NAI, "norm": "task",
                                "input_side": "activation"})]:
        omega = task_omega(method, hp, model, data)
        cells = [f"{hp['lam'] * v.float().mean().item():.3g}" for k, v in omega.items()
                 if k.endswith("weight")]
        print(f"{label} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
