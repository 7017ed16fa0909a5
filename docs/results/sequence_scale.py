"""How EWC and NAI weigh the tasks of one sequence against each other (session 26).

Session 26 found that the u_t NAI measures after each task of a sequence grows with the
penalty's pressure on that task (a task learned first is measured free of it), so its factor
u_t^γ with γ > 1 can leave an easy first-learned task almost unweighted. Does EWC's Fisher,
measured in the same sequence, weigh its tasks the same way? This script trains the reverse
order 4-3-2-1-0 of a CNN folder's benchmark, the study's seed and protocol (the folder's
``tune-orders-2`` settings), once with EWC and once with NAI, each at the point that reading
froze (Split Fashion-MNIST: EWC λ 11111, NAI γ 1 λ 3333; ``frozen_point.py``), keeps each
run's last checkpoint, and prints per task in training order: the mean of EWC's Fisher over
each trunk weight tensor (conv1 / conv2 / fc) and relative to the first task's, and NAI's u_t
and u_t / u_first (with ``norm="network"`` every task's trunk Ω has
one scale before the factor, so u_t^γ is NAI's weight of task t); the last line is the slope
of log Fisher on log u_t over the five positions, per layer and on their mean: the γ at which
NAI's u_t^γ spreads this sequence's tasks as EWC's Fisher does. A rerun reads the finished
runs' checkpoints in ``/tmp/sequence-scale/<folder name>`` instead of training again. Output
in the folder's ``sequence_scale.txt``. Run from the repository root:

    python docs/results/sequence_scale.py docs/results/FOLDER [DATA_DIR]
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import linear_regression

import torch
from frozen_point import train_frozen_point

ORDER = [4, 3, 2, 1, 0]


def _run(method: str, folder: Path, data: str) -> dict:
    torch.set_num_threads(1)
    scratch = Path("/tmp/sequence-scale") / folder.name
    scratch.mkdir(parents=True, exist_ok=True)
    ckpt = scratch / f"{method}.pt"
    res, hp = train_frozen_point(folder, method, data, ORDER, ckpt)
    state = torch.load(ckpt, weights_only=False)["strategy"]
    out = {"acc": res.acc, "lam": hp["lam"], "benchmark": res.benchmark, "seed": res.seed}
    if method == "ewc":
        out["fisher"] = [[v.double().mean().item() for k, v in fisher.items()
                          if k.startswith("trunk.") and k.endswith("weight")]
                         for _, fisher in state["terms"]]
    else:
        out["u"] = state["task_uncertainty"]
    return out


def main() -> None:
    folder = Path(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
    with ProcessPoolExecutor(2) as pool:
        ewc, nai = pool.map(_run, ["ewc", "nai"], [folder] * 2, [data] * 2)
    print(f"{ewc['benchmark']} | order {'-'.join(map(str, ORDER))} | seed {ewc['seed']} | EWC λ "
          f"{ewc['lam']:g} ACC {ewc['acc']:.2f} | NAI (γ 1) λ {nai['lam']:g} ACC {nai['acc']:.2f}")
    f0, u0 = ewc["fisher"][0], nai["u"][0]
    for pos, task in enumerate(ORDER):
        f, u = ewc["fisher"][pos], nai["u"][pos]
        print(f"position {pos + 1}, task {task} | EWC Fisher "
              + " / ".join(f"{v:.2e}" for v in f) + " | × first "
              + " / ".join(f"{v / w:.1f}" for v, w in zip(f, f0))
              + f" | NAI u {u:.2e} | × first {u / u0:.1f}")
    log_u = [math.log(v) for v in nai["u"]]
    slopes = [linear_regression(log_u, [math.log(f[k]) for f in ewc["fisher"]]).slope
              for k in range(len(f0))]
    print("slope of log Fisher on log u_t over the positions: "
          + " / ".join(f"{v:.2f}" for v in slopes) + f" | mean {sum(slopes) / len(slopes):.2f}")


if __name__ == "__main__":
    main()
