"""Screens run after the CNN study, on order 0 and the reverse order, seed 10.

Each changes NAI's frozen point (``norm="network"``, λ 0.1) in one way and runs it under the
study's settings. They are diagnoses, chosen after seeing the reverse order's test accuracy
(8 vs 9, learned first, is forgotten), not tuned results:

* ``accsum``: ``acc="sum"`` instead of ``"decay"``: does the decay of older tasks' Ω explain
  it? Records: ``nai-accsum-screen.jsonl``.
* ``task-norm``: ``input_side="activation"`` and ``norm="task"`` (Ω_ij = E[c_i²]·E[a_j²],
  the two factors of EWC's Fisher, divided by one number per task), λ 0.1: does the tasks'
  scale explain it? Records: ``nai-task-norm-screen.jsonl``.
* ``fisher-raw`` (session 20): ``norm="none"``, ``input_side="activation"`` and the Fisher
  example weights p_y(1 − p_y) left unnormalised (``conductance_weight="fisher-raw"``), λ 1000
  set from ``task_scale.txt``, not tuned: does weighing a hard task up as EWC's Fisher does
  save it? Records: ``nai-fisher-raw-screen.jsonl``.
* ``anchor-task`` (session 20): ``anchor="task"``, each task pulling to its own weights as in
  EWC. Records: ``nai-anchor-task-screen.jsonl`` (empty: these two runs are in ``runs.jsonl``,
  where the 7-run study of this variant found them; its read is ``nai-anchor-task/``).
* ``joint-task`` (session 20): ``map="joint"`` with ``norm="task"``: Ω_ij = E_n[s_i(n)·a_j(n)²]
  (the Fisher's per-example form, conductance in place of the output gradient) divided by one
  number per task, λ 0.1 as for ``task-norm``, not tuned: does a within-layer spread that
  follows the examples, without the per-layer norm, save 8 vs 9? Records:
  ``nai-joint-task-screen.jsonl``. ``joint-task-lam``: the same at λ 0.3 and 1 on order 0
  (λ 0.1 forgot 2 vs 3 there), same records file.
* ``joint-task-sum`` (session 20): as ``joint-task``, with a conv kernel entry's uses summed
  over the output positions instead of averaged (``joint_positions="sum"``), which gives the
  layers EWC's profile (``omega_concentration.txt``), λ 0.1 set from that profile, not tuned.
  Records: ``nai-joint-task-sum-screen.jsonl``.
* ``joint-sum-raw`` (session 20): as ``joint-task-sum``, without the task's normalisation and
  with the Fisher example weights left raw (``norm="none"``, ``conductance_weight=
  "fisher-raw"``): Ω then has the Fisher's per-layer sizes *and* its per-task scale (on task
  0 trained alone, within a factor 2 of EWC's Fisher in every layer), λ 300, EWC's, not tuned.
  Records: ``nai-joint-sum-raw-screen.jsonl``. ``joint-sum-raw-lam``: the same at λ 100 and
  1000 on order 0 (the start of its grid), same records file. ``joint-sum-raw-reverse``
  (session 21, after its study chose λ 100 and lost 8 vs 9 on the reverse order): the reverse
  order at λ 1000, the point seed 15's tuning chose, same records file.
* ``task-weight`` (session 21): the frozen NAI (``norm="network"``) with each task's Ω
  multiplied by its mean p_y(1 − p_y) (``task_weight="uncertainty"``), the factor by which
  EWC's Fisher holds 8 vs 9 7× harder than 0 vs 1 (``task_scale.txt``); λ 30 ≈ the frozen
  0.1 divided by a typical task's 3e-3, not tuned. Records: ``nai-task-weight-screen.jsonl``.
* ``online-ewc`` (session 20, a control): online EWC, λ 300, γ 1, one anchor and one summed
  Fisher, as NAI has: does a single anchor explain the forgetting? Records:
  ``online-ewc-screen.jsonl``.

Run from the repository root:

    python docs/results/continual-cnn-split-mnist-10ep-seed10/screens.py NAME [DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neuron_importance.experiments.continual import RunSpec, StudySettings, append_runs

HERE = Path(__file__).resolve().parent
#: name -> (method, changes to NAI's frozen point or, for a baseline, its hyperparameters (a
#: list of λ: one run per value), records file[, the orders' indices; default order 0 and the
#: reverse order 1])
SCREENS = {
    "accsum": ("nai", {"acc": "sum"}, "nai-accsum-screen.jsonl"),
    "task-norm": ("nai", {"norm": "task", "input_side": "activation", "lam": 0.1},
                  "nai-task-norm-screen.jsonl"),
    "fisher-raw": ("nai", {"norm": "none", "input_side": "activation",
                           "conductance_weight": "fisher-raw", "lam": 1000.0},
                   "nai-fisher-raw-screen.jsonl"),
    "anchor-task": ("nai", {"anchor": "task"}, "nai-anchor-task-screen.jsonl"),
    "joint-task": ("nai", {"map": "joint", "norm": "task", "lam": 0.1},
                   "nai-joint-task-screen.jsonl"),
    # order 0 only, two stronger λ (the joint map concentrates Ω on few weights)
    "joint-task-lam": ("nai", {"map": "joint", "norm": "task", "lam": [0.3, 1.0]},
                       "nai-joint-task-screen.jsonl", [0]),
    "joint-task-sum": ("nai", {"map": "joint", "norm": "task", "joint_positions": "sum",
                               "lam": 0.1}, "nai-joint-task-sum-screen.jsonl"),
    "joint-sum-raw": ("nai", {"map": "joint", "norm": "none", "joint_positions": "sum",
                              "conductance_weight": "fisher-raw", "lam": 300.0},
                      "nai-joint-sum-raw-screen.jsonl"),
    "joint-sum-raw-lam": ("nai", {"map": "joint", "norm": "none", "joint_positions": "sum",
                                  "conductance_weight": "fisher-raw", "lam": [100.0, 1000.0]},
                          "nai-joint-sum-raw-screen.jsonl", [0]),
    "joint-sum-raw-reverse": ("nai", {"map": "joint", "norm": "none", "joint_positions": "sum",
                                      "conductance_weight": "fisher-raw", "lam": 1000.0},
                              "nai-joint-sum-raw-screen.jsonl", [1]),
    "task-weight": ("nai", {"task_weight": "uncertainty", "lam": 30.0},
                    "nai-task-weight-screen.jsonl"),
    "online-ewc": ("online-ewc", {"lam": 300.0, "gamma": 1.0, "empirical": False,
                                  "n_samples": None}, "online-ewc-screen.jsonl"),
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SCREENS:
        print(f"usage: screens.py {{{','.join(SCREENS)}}} [DATA_DIR]", file=sys.stderr)
        return 2
    method, changes, records, *which = SCREENS[sys.argv[1]]
    res = json.loads((HERE / "results.json").read_text())
    settings = StudySettings.from_saved(res["settings"])
    frozen = res["chosen_hyperparameters"]["split-mnist"]["nai"]
    assert frozen["norm"] == "network", "run after the study is read with norm='network'"
    hp = {**frozen, **changes} if method == "nai" else changes
    lams = hp["lam"] if isinstance(hp["lam"], list) else [hp["lam"]]
    orders = res["orders"]["split-mnist"]
    specs = [RunSpec("main", "split-mnist", method, tuple(orders[i]),
                     tuple(sorted({**hp, "lam": lam}.items())),
                     settings.epochs["split-mnist"], "task", "", settings.seed)
             for lam in lams for i in (which[0] if which else (0, 1))]
    data_dir = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
    n = append_runs(specs, settings, HERE / records, data_dir, HERE / "checkpoints-screens",
                    jobs=2, done_files=[HERE / "runs.jsonl", HERE / records])
    print(f"trained {n} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
