"""How concentrated each penalty's Ω is within a weight tensor (session 20).

Trains the study's CNN on Split MNIST's first task (0 vs 1) alone, 2 epochs, seed 0 (the
training of ``layer_stiffness.py``), computes Ω on 2,000 training examples, and prints per
weight tensor (conv1 / conv2 / fc): the share of the tensor's total Ω held by its top 1 % of
entries, the fraction of entries with Ω below 1 % of the tensor's mean (nearly free), and the
tensor's mean Ω relative to conv1's (the layer profile; λ cancels).
Output in ``omega_concentration.txt`` beside this file. Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/omega_concentration.py [DATA_DIR]
"""

from __future__ import annotations

import sys

import torch
from layer_stiffness import FISHER_NAI, first_task, task_omega

PENALTIES = [("EWC (Fisher)", "ewc", {"lam": 1.0}),
             ("NAI, norm network", "nai", {"lam": 1.0, **FISHER_NAI, "norm": "network"}),
             ("NAI, map joint, norm task", "nai",
              {"lam": 1.0, **FISHER_NAI, "map": "joint", "norm": "task"}),
             ("NAI, map joint, norm task, joint_positions sum", "nai",
              {"lam": 1.0, **FISHER_NAI, "map": "joint", "norm": "task",
               "joint_positions": "sum"})]


def main() -> None:
    torch.set_num_threads(1)
    model, data = first_task(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    print("penalty | top-1 % share (conv1 / conv2 / fc) | fraction below 1 % of the mean | "
          "mean relative to conv1's")
    for label, method, hp in PENALTIES:
        omega = task_omega(method, hp, model, data)
        top, free, means = [], [], []
        for k, v in omega.items():
            if not (k.startswith("trunk.") and k.endswith("weight")):
                continue
            v = v.double().flatten()
            n = max(1, v.numel() // 100)
            top.append(f"{float(v.topk(n).values.sum() / v.sum()):.3f}")
            free.append(f"{float((v < 0.01 * v.mean()).double().mean()):.3f}")
            means.append(float(v.mean()))
        profile = " / ".join(f"{m / means[0]:.3g}" for m in means)
        print(f"{label} | {' / '.join(top)} | {' / '.join(free)} | {profile}", flush=True)


if __name__ == "__main__":
    main()
