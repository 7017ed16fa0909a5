"""Seed-bootstrap support of the goal verdicts of every committed multi-seed study.

Reads each ``docs/results/*/results.json`` (and ``*/*/results.json``: a study re-read under
another tuning rule) whose orders have 2 or more training seeds and
prints, per benchmark and NAI variant, how often each goal comparison (mean, worst order,
std against the best of EWC/SI/MAS) holds over 2,000 paired resamples of the seeds
(:func:`neuron_importance.continual.goal_support`). Writes ``goal_support.md`` beside this
script. Run from the repository root: ``python docs/results/goal_support.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from neuron_importance.continual import acc_table, goal_support

HERE = Path(__file__).resolve().parent


def main() -> None:
    lines = ["# Seed-bootstrap support of the committed studies' goals", "",
             "Fraction of 2,000 paired resamples of each order's training seeds in which the "
             "comparison holds against the best of EWC/SI/MAS in that study (the study's value "
             "of the difference, then its 95 % interval). Seed noise only: task orders and "
             "frozen hyperparameters held fixed. Written by `goal_support.py`.", "",
             "| study | benchmark | method | seeds | mean ≥ | worst ≥ | std ≤ | all three |",
             "|---|---|---|---|---|---|---|---|"]
    # a study's subfolder holds its runs re-read under another tuning rule (e.g. one-se/)
    for path in sorted([*HERE.glob("*/results.json"), *HERE.glob("*/*/results.json")]):
        res = json.loads(path.read_text())
        for b, summary in res["summary"].items():
            regs = [m for m in ("ewc", "si", "mas") if m in summary]
            table = acc_table([r for r in res["runs"] if r["benchmark"] == b])
            for nm in ("nai", "nai-tc"):
                if nm not in table or not regs:
                    continue
                sup = goal_support(table, nm, regs)
                if sup is None:
                    continue
                cells = []
                for k in ("mean", "worst", "std"):
                    d = sup[f"{k}_diff"]
                    cells.append(f"{sup[k]:.2f} ({d['value']:+.2f}, [{d['ci95'][0]:+.2f}, "
                                 f"{d['ci95'][1]:+.2f}])")
                n_seeds = min(len(s) for s in sup["seeds_per_order"])
                study = path.parent.relative_to(HERE).as_posix()
                lines.append(f"| {study} | {b} | {nm} vs {'/'.join(regs)} | "
                             f"{n_seeds} | " + " | ".join(cells) + f" | {sup['all']:.2f} |")
    text = "\n".join(lines) + "\n"
    (HERE / "goal_support.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
