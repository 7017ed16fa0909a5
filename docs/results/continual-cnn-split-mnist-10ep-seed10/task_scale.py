"""How each penalty weighs the five Split MNIST tasks against each other (session 20).

Trains the CNN of the study (conv 16, 32 + fc 256) on each task *alone* for 2 epochs, seed 0,
then prints, per task, its test accuracy, the mean p_y(1 − p_y) of its softmax on 2,000
training examples, and the mean over each trunk weight tensor (conv1 / conv2 / fc) of EWC's
Fisher and of NAI's Ω (λ = 1) for: the study's NAI without normalisation (Fisher example weights
normalised to mean 1), the same with the input side's activation moments, and with the weights
left raw (``conductance_weight="fisher-raw"``). EWC's Fisher is 7–100 times larger for the hard
pair 8 vs 9 than for an easy pair; NAI's normalised weights give it *less* Ω than the easy ones.
Session 21 added two columns: the per-example map summed over positions with raw Fisher weights
(``screens.py joint-sum-raw``), explaining the centred logit or log p_y
(``conductance_target="logprob"``); both give 8 vs 9 1.3–5× task 0's Ω, against the Fisher's
7–10×, as a unit's conductance keeps its activation as a factor that the Fisher lacks.
Output in ``task_scale.txt`` beside this file. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/task_scale.py [DATA_DIR]
"""

from __future__ import annotations

import sys

import torch

# this folder's script: the same training, NAI settings and Ω lookup
from layer_stiffness import FISHER_NAI as STUDY_NAI
from layer_stiffness import task_omega, train_alone

from neuron_importance.continual import make_stream
from neuron_importance.continual.strategies import TaskData

FISHER_NAI = {**STUDY_NAI, "norm": "none"}
PENALTIES = [("EWC", "ewc", {"lam": 1.0}),
             ("NAI none", "nai", {"lam": 1.0, **FISHER_NAI}),
             ("NAI none, input side activation", "nai",
              {"lam": 1.0, **FISHER_NAI, "input_side": "activation"}),
             ("NAI none, input side activation, fisher-raw", "nai",
              {"lam": 1.0, **FISHER_NAI, "input_side": "activation",
               "conductance_weight": "fisher-raw"}),
             # session 21: the per-example map summed over positions, raw Fisher weights
             # (screens.py joint-sum-raw), for the logit and for log p_y (logprob)
             ("NAI joint-sum-raw", "nai",
              {"lam": 1.0, **FISHER_NAI, "map": "joint", "joint_positions": "sum",
               "conductance_weight": "fisher-raw"}),
             ("NAI joint-sum-raw, logprob", "nai",
              {"lam": 1.0, **FISHER_NAI, "map": "joint", "joint_positions": "sum",
               "conductance_weight": "fisher-raw", "conductance_target": "logprob"})]


def main() -> None:
    torch.set_num_threads(1)
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    stream = make_stream("split-mnist", data_dir=data_dir)
    print("task | test acc | mean p(1-p) | " + " | ".join(
        f"{label} (conv1/conv2/fc)" for label, _, _ in PENALTIES))
    for ti, task in enumerate(stream.tasks):
        model = train_alone(task, ti)
        x, y = task.x_train[:2000], task.y_train[:2000]
        with torch.no_grad():
            py = torch.softmax(model(x, task=ti).double(), 1).gather(1, y.view(-1, 1)).squeeze(1)
            test = (model(task.x_test, task=ti).argmax(1) == task.y_test).double().mean()
        data = TaskData(x, y, lambda v, t=ti, m=model: m(v, task=t), ti, ti)
        cells = [task.name, f"{100 * float(test):.2f}", f"{float((py * (1 - py)).mean()):.2e}"]
        for _, method, hp in PENALTIES:
            omega = task_omega(method, hp, model, data)
            cells.append(" / ".join(f"{v.float().mean().item():.2e}" for k, v in omega.items()
                                    if k.startswith("trunk.") and k.endswith("weight")))
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
