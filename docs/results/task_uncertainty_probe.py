"""The u_t NAI's uncertainty factor measures in a study's run, to place λ for a power γ.

Session 25 found that NAI's factor u_t^γ (``task_weight_power``) needs λ ≈ λ₁ · ū^(1 − γ),
where λ₁ is the strength chosen with γ 1 and ū the u_t = mean p_y(1 − p_y) that NAI measures
*in the study* (after each task's training under the penalty), not the u of a network trained on
the task alone. This script re-trains one run of a CNN folder's two-order reading
(``tune-orders-2/results.json``: its settings and NAI's chosen hyperparameters, γ 1) on the
identity order with the study's seed, and prints each task's u_t, their geometric mean ū and
λ₁ · ū^(1 − γ) for γ = 2.5 and for the γ given (session 26). Run from the repository root:

    python docs/results/task_uncertainty_probe.py docs/results/FOLDER [DATA_DIR [GAMMA]]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from frozen_point import train_frozen_point

GAMMA = 2.5


def main() -> None:
    folder = Path(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
    torch.set_num_threads(1)
    res, hp = train_frozen_point(folder, "nai", data)
    u = res.task_uncertainty
    geo = math.exp(sum(math.log(v) for v in u) / len(u))
    gammas = sorted({GAMMA, float(sys.argv[3]) if len(sys.argv) > 3 else GAMMA})
    print(f"{res.benchmark} | NAI λ {hp['lam']:g} | order {res.order} | seed {res.seed} | "
          f"ACC {res.acc:.2f}")
    print("u_t " + " / ".join(f"{v:.2e}" for v in u) + f" | geometric mean {geo:.2e} | "
          + " | ".join(f"λ for γ {g:g}: {hp['lam'] * geo ** (1 - g):.3g}" for g in gammas))


if __name__ == "__main__":
    main()
