"""Which part of NAI's Ω forgets 8 vs 9: its within-layer distribution, or its layer sizes?

A diagnosis (session 20) on the reverse order 4-3-2-1-0 of the CNN study, seed 10, where 8 vs 9
is learned first. Two hybrid penalties, each a quadratic with one anchor (the weights at the end
of the last task) and Ω summed over tasks, as online EWC, which keeps 8 vs 9 at 99.60 there:

* ``ewc-within``: each weight tensor's Ω is EWC's Fisher F rescaled to NAI's mean,
  Ω = F · mean(Ω_NAI) / mean(F): EWC's choice of *which* weights of a tensor to hold, NAI's
  sizes per tensor and per task. λ 0.1, NAI's.
* ``nai-within``: Ω = Ω_NAI · mean(F) / mean(Ω_NAI): NAI's choice of which weights, EWC's sizes.
  λ 300, EWC's.

Ω_NAI is the study's frozen NAI (``norm="network"``, squared centred conductance with Fisher
example weights on 2,000 examples, floor 0.003) for the finished task alone; F is EWC's Fisher
(labels sampled from the model, every training example of the task). Each run trains the
study's protocol (10 epochs, head warm-up 1) through ``run_sequence``, with the strategy built
here in place of ``make_strategy``'s. Records: ``hybrid-omega.jsonl`` (not study records:
they have no ``phase``). Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/hybrid_omega.py [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
MODES = {"ewc-within": 0.1, "nai-within": 300.0}


def _hybrid_class() -> type:
    from neuron_importance.continual import NAI, NAIOptions
    from neuron_importance.continual.strategies import EWC, Strategy, TaskData

    frozen = json.loads((HERE / "results.json").read_text())
    hp = dict(frozen["chosen_hyperparameters"]["split-mnist"]["nai"])
    hp.pop("lam")

    class Hybrid(Strategy):
        name = "hybrid"

        def __init__(self, mode: str, lam: float, seed: int) -> None:
            self.mode, self.lam, self.seed = mode, lam, seed
            self.omega: dict[str, Tensor] = {}
            self.anchor: dict[str, Tensor] = {}

        def hyperparameters(self) -> dict[str, Any]:
            return {"mode": self.mode, "lam": self.lam}

        def after_task(self, model: nn.Module, data: TaskData) -> None:
            fisher = EWC(1.0, seed=self.seed).fisher(model, data)
            nai = NAI(1.0, NAIOptions(**hp), seed=self.seed)
            nai.after_task(model, data)
            for k, om in nai.omega.items():
                f = fisher[k].to(om)
                new = (f * om.mean() / f.mean() if self.mode == "ewc-within"
                       else om * f.mean() / om.mean())
                self.omega[k] = self.omega.get(k, 0) + new
            self.anchor = {k: p.detach().clone() for k, p in model.shared_named_parameters()}

        def penalty(self, model: nn.Module) -> Tensor | None:
            if not self.anchor:
                return None
            params = dict(model.named_parameters())
            return 0.5 * self.lam * sum((self.omega[k] * (params[k] - self.anchor[k]).square())
                                        .sum() for k in self.omega)

        def state_dict(self) -> dict[str, Any]:
            return {"omega": self.omega, "anchor": self.anchor}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.omega, self.anchor = dict(state["omega"]), dict(state["anchor"])

    return Hybrid


def run(mode: str, data_dir: str) -> dict[str, Any]:
    from neuron_importance.continual import make_stream, trainer
    from neuron_importance.experiments.continual import StudySettings

    torch.set_num_threads(1)
    res = json.loads((HERE / "results.json").read_text())
    s = res["settings"]
    order = res["orders"]["split-mnist"][1]
    hybrid = _hybrid_class()
    trainer.make_strategy = lambda method, h, seed=0: hybrid(mode, MODES[mode], seed)
    stream = make_stream("split-mnist", data_dir=data_dir).reordered(order)
    config = StudySettings.from_saved(s).train_config(s["epochs"]["split-mnist"], s["seed"])
    out = trainer.run_sequence(stream, "nai", {"mode": mode}, config)
    return {"mode": mode, "lam": MODES[mode], "order": order, **out.to_json()}


def main() -> None:
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    with ProcessPoolExecutor(2) as ex:
        futures = [ex.submit(run, m, data_dir) for m in MODES]
        for fut in futures:
            rec = fut.result()
            with open(HERE / "hybrid-omega.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(rec["mode"], round(rec["acc"], 2), [round(v, 2) for v in rec["acc_matrix"][-1]])


if __name__ == "__main__":
    main()
