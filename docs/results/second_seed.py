"""A second training seed for EWC and NAI on a 1-seed study's orders (session 21).

A study run with one training seed per order compares EWC and NAI with one seed's noise.
This script trains the next seed (the study's ``--seed`` + 1) for the two methods at their
frozen points (the study's ``results.json``), with no re-tuning, appends the records to
``FOLDER/second-seed-runs.jsonl`` (each a run a ``--seeds 2`` study would reuse), and writes
``FOLDER/second_seed.txt``: per order the ACC of each seed and their mean, then mean ± std
(ddof 0, over the orders' 2-seed means) and worst, and the per-order differences NAI − EWC.
Used on ``continual-cnn-split-mnist-10ep-seed15`` and ``continual-cnn-split-fmnist-10ep-seed10``.
Run from the repository root:

    python docs/results/second_seed.py docs/results/FOLDER [DATA_DIR] [MORE_BASELINES] [--seeds N]

(``MORE_BASELINES``, e.g. ``si,mas``: those methods get a second seed too, and the last line
compares NAI with the best of all the baselines given. ``--seeds N``, default 2: train the
seeds up to the study's ``--seed`` + N − 1 and read the N-seed means, written to
``seeds_N.txt`` for N > 2; session 22 read a third seed on Split Fashion-MNIST, session 23
five. Session 23 also ran it on copies of the Split MNIST folders holding ``runs.jsonl``,
``second-seed-runs.jsonl`` and ``nai-task-weight/results.json``, for the NAI read there, and
session 24 with five seeds on seed 10's copy; session 25 on a copy holding Split
Fashion-MNIST's two-order reading (``tune-orders-2/results.json``) and from
``task_weight_power.py``. Since session 24 the text ends with each method's per-task
accuracy right after learning the task and at the end.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neuron_importance.continual.seed_bootstrap import goal_support
from neuron_importance.experiments.continual import (
    RunSpec,
    StudySettings,
    append_runs,
    per_task_learned_final,
)

METHODS = ("ewc", "nai")  # always; more baselines (e.g. si,mas) as a third argument


def main() -> int:
    p = argparse.ArgumentParser(description="more training seeds at a 1-seed study's points")
    p.add_argument("folder", type=Path)
    p.add_argument("data_dir", nargs="?", default="../shared/data")
    p.add_argument("baselines", nargs="?", default="",
                   help="more baselines than EWC, e.g. si,mas")
    p.add_argument("--seeds", type=int, default=2, help="training seeds in all (>= 2)")
    args = p.parse_args()
    if args.seeds < 2:
        p.error(f"--seeds must be at least 2, got {args.seeds}")
    methods = METHODS + tuple(m for m in args.baselines.split(",") if m and m not in METHODS)
    here = args.folder
    records = here / "second-seed-runs.jsonl"
    res = json.loads((here / "results.json").read_text())
    settings = StudySettings.from_saved(res["settings"])
    (bench,) = settings.benchmarks
    chosen = res["chosen_hyperparameters"][bench]
    orders = [tuple(o) for o in res["orders"][bench]]
    seeds = tuple(settings.seed + i for i in range(args.seeds))
    specs = [RunSpec("main", bench, m, o, tuple(sorted(chosen[m].items())),
                     settings.epochs[bench], "task", "", sd)
             for sd in seeds[1:] for m in methods for o in orders]
    n = append_runs(specs, settings, records, args.data_dir, here / "checkpoints-second-seed",
                    jobs=2, done_files=[here / "runs.jsonl", records])
    print(f"trained {n} runs")
    recs = [json.loads(line) for path in (here / "runs.jsonl", records)
            for line in path.read_text().splitlines()]
    acc: dict[tuple[str, tuple[int, ...], int], float] = {}
    matrix: dict[tuple[str, tuple[int, ...], int], list[list[float]]] = {}
    for r in recs:
        if (r["phase"] == "main" and r["benchmark"] == bench and r["method"] in methods
                and r["scenario"] == "task"):
            if r["hyperparameters"] == chosen[r["method"]]:
                acc[(r["method"], tuple(r["order"]), r.get("seed", 0))] = r["acc"]
                matrix[(r["method"], tuple(r["order"]), r.get("seed", 0))] = r["acc_matrix"]
    k = len(seeds)
    lines = ["order | " + " | ".join(f"{m} seed {s}" for m in methods for s in seeds)
             + " | " + " | ".join(f"{m} mean" for m in methods) + " | nai − ewc"]
    means = {m: [] for m in methods}
    for o in orders:
        row = [acc[(m, o, s)] for m in methods for s in seeds]
        mm = {m: float(np.mean([acc[(m, o, s)] for s in seeds])) for m in methods}
        for m in methods:
            means[m].append(mm[m])
        lines.append("-".join(map(str, o)) + " | " + " | ".join(f"{v:.2f}" for v in row)
                     + " | " + " | ".join(f"{mm[m]:.2f}" for m in methods)
                     + f" | {mm['nai'] - mm['ewc']:+.2f}")
    for m in methods:
        v = np.array(means[m])
        lines.append(f"{m}: {k}-seed mean {v.mean():.3f} ± {v.std():.3f} (worst {v.min():.3f}); "
                     + "; ".join(f"seed {sd} alone "
                                 f"{np.mean([acc[(m, o, sd)] for o in orders]):.3f}"
                                 for sd in seeds[1:]))
    d = np.array(means["nai"]) - np.array(means["ewc"])
    lines.append(f"nai − ewc per order: mean {d.mean():+.3f}, orders where NAI ≥ EWC: "
                 f"{int((d >= 0).sum())} of {len(d)}")
    # the three comparisons on the k-seed means, against the baselines given
    base = [m for m in methods if m != "nai"]
    v = {m: np.array(means[m]) for m in methods}
    lines.append(
        f"nai against the best of {'/'.join(base)}: mean {v['nai'].mean():.3f} vs "
        f"{max(v[m].mean() for m in base):.3f}, worst {v['nai'].min():.3f} vs "
        f"{max(v[m].min() for m in base):.3f}, std {v['nai'].std():.3f} vs "
        f"{min(v[m].std() for m in base):.3f}")
    # how much of each verdict survives a re-draw of the seeds (paired bootstrap per order)
    table = {m: {o: {sd: acc[(m, o, sd)] for sd in seeds} for o in orders} for m in methods}
    sup = goal_support(table, "nai", base)
    if sup is not None:
        lines.append(f"seed bootstrap ({sup['n_boot']} paired resamples of the {k} seeds per "
                     f"order): nai meets mean in {sup['mean']:.0%}, worst in "
                     f"{sup['worst']:.0%}, std in {sup['std']:.0%}, all three in "
                     f"{sup['all']:.0%}")
    # where each method loses accuracy: per task identity, right after learning it → at the end
    lines.append(f"per task ({k} seeds, mean over orders and seeds): learned → final")
    for m in methods:
        pt = per_task_learned_final({o: [{"acc_matrix": matrix[(m, o, sd)]} for sd in seeds]
                                     for o in orders})
        lines.append(f"  {m}: " + "; ".join(
            f"task {t} {v['learned']:.2f} → {v['final']:.2f}" for t, v in pt.items()))
    text = "\n".join(lines) + "\n"
    (here / ("second_seed.txt" if k == 2 else f"seeds_{k}.txt")).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
