"""How large each task's NAI importances are, task by task, on Permuted MNIST (session 15).

Trains NAI on the first tasks of one Permuted MNIST order with the study's protocol (MLP
400-400, dropout 0.2, 10 epochs, patience 2, seed 0, floor 0.003) and, after each task,
records the raw unit statistic E[h²] of each hidden layer (mean, max, quantiles) and the mean of the weight
importances Ω_new that task adds, per layer. With ``norm=max`` the trunk's Ω_new is the
statistic over its maximum, so a task whose E[h²] has a heavier tail is held more loosely.

    python omega_scale.py NORM LAMBDA N_TASKS OUT.jsonl

Session 15 ran ``max 0.09 5`` and ``mean 0.01 5`` (``omega_scale.jsonl`` beside this file,
one line per task, the run's accuracy matrix last). Those records came from a first draft of
this script that computed the same quantities and also stored max/mean ratios; they were
converted to this format without recomputing.
"""

import json
import sys

import torch

from neuron_importance.continual import TrainConfig, make_stream, run_sequence
from neuron_importance.continual import nai as nai_module


def main() -> None:
    norm, lam, n_tasks, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    original = nai_module.NAI.after_task
    lines: list[dict] = []

    def after_task(self, model, data):
        raw = {k: v.detach().double() for k, v in self._raw(model, data).items()}
        rec: dict = {"norm": norm, "lam": lam, "identity": data.identity}
        for k, v in raw.items():
            q = torch.quantile(v, torch.tensor([0.5, 0.9, 0.99], dtype=v.dtype)).tolist()
            rec[k] = {"mean": v.mean().item(), "max": v.max().item(), "q50": q[0],
                      "q90": q[1], "q99": q[2]}
        before = {k: t.clone() for k, t in self.omega.items()}
        original(self, model, data)
        # acc="decay": Ω = ηΩ_old + Ω_new, so Ω_new = Ω − ηΩ_old
        rec["omega_new_mean"] = {
            k: (t - self.options.eta * before[k] if k in before else t).mean().item()
            for k, t in self.omega.items() if k.endswith("weight")}
        lines.append(rec)
        print(json.dumps(rec), flush=True)

    nai_module.NAI.after_task = after_task
    stream = make_stream("permuted-mnist")
    stream.tasks = stream.tasks[:n_tasks]
    config = TrainConfig(epochs=10, patience=2, dropout=0.2, seed=0)
    res = run_sequence(stream, "nai", {"lam": lam, "norm": norm, "floor": 0.003}, config)
    lines.append({"norm": norm, "lam": lam, "acc_matrix": res.acc_matrix})
    with open(out, "a") as f:
        for rec in lines:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
