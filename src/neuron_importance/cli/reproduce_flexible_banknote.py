"""``neuron-importance reproduce flexible-banknote``: the KST-GP banknote case study (issue 6)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from neuron_importance.cli.reproduce import _with_threads, add_experiment_parser

NAME = "flexible-banknote"


def add(subparsers: Any) -> argparse.ArgumentParser:
    p = add_experiment_parser(
        subparsers,
        NAME,
        help_text="KST networks of GP activations on UCI banknote: smallest topology reaching "
        "99.5 %% CV accuracy, baselines, learned functions, feature ranking",
        description="De-duplicate UCI banknote authentication (24 repeated rows), run "
        "stratified 5-fold CV repeated over seeds for a sweep of small KST networks (hidden "
        "width x control points; full-batch Adam) and for logistic regression, an RBF SVM and "
        "an MLP of similar size on the same folds; pick the fewest-parameter KST network with "
        "mean accuracy >= 99.5 %%, refit it, plot its learned functions and per-feature "
        "responses and rank the features (response range, DeepLIFT). The full mode also runs "
        "the KST pipeline on scikit-learn's breast-cancer and wine sets. Writes results.json, "
        "report.md, learned_functions.png, feature_response.png and cv_accuracy.png.",
        quick_text="1 seed, 4 topologies, 600 steps, no extra data sets (under 3 minutes on "
        "2 cores)",
    )
    p.set_defaults(func=_with_threads(_run))
    return p


def _run(args: argparse.Namespace) -> int:
    from neuron_importance.experiments.flexible_banknote import headline, reproduce

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    res = reproduce(args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                    progress=not args.quiet, log=log)
    for line in headline(res):
        log(line)
    files = ", ".join(str(Path(args.out) / f) for f in res["files"])
    log(f"wrote {files} in {time.perf_counter() - t0:.1f} s")
    return 0
