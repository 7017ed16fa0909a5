"""``neuron-importance reproduce deeplift-mnist``: DeepLIFT's MNIST digit conversion (Fig. 4)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from neuron_importance.cli.reproduce import _with_threads, add_experiment_parser

NAME = "deeplift-mnist"


def add(subparsers: Any) -> argparse.ArgumentParser:
    p = add_experiment_parser(
        subparsers,
        NAME,
        help_text="DeepLIFT paper Fig. 4: erase pixels to turn an 8 into a 3 or 6, a 9 or 4 "
        "into a 1; log-odds change per method",
        description="Train (or load the cached) DeepLIFT paper MNIST CNN (>= 99.2 %% test "
        "accuracy), rank the pixels of every test image of the original class by S(o) - S(t) "
        "with |grad|, guided backprop, grad x input, IG (5/10/50 steps, midpoint), DeepLIFT "
        "Rescale and RevealCancel, DeepLiftShap and a random control, erase up to 157 "
        "positive-score pixels and record the change of the logit log-odds for the "
        "conversions 8->3, 8->6, 9->1, 4->1. Writes results.json, report.md, "
        "logodds_boxplot.png and examples.png.",
        quick_text="40 images per class, 4 DeepLiftShap references; uses the cached full "
        "model when there is one, else trains on 10000 images for 2 epochs (under 3 minutes "
        "on 2 cores)",
    )
    p.add_argument("--n-per-class", type=int, metavar="N",
                   help="test images per original class (default: all; 40 with --quick)")
    p.add_argument("--input-scale", type=float, default=1.0, metavar="S",
                   help="multiply the [0, 1] pixels by S before scoring and erasing (the "
                   "model is trained on [0, 1]; 255 mimics the authors' raw-pixel scoring); "
                   "default 1")
    p.set_defaults(func=_with_threads(_run))
    return p


def _run(args: argparse.Namespace) -> int:
    from neuron_importance.experiments.deeplift_mnist import headline, reproduce

    if args.n_per_class is not None and args.n_per_class < 1:
        raise ValueError("--n-per-class must be positive")
    if not args.input_scale > 0:
        raise ValueError("--input-scale must be positive")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    res = reproduce(
        args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
        cache_dir=args.cache_dir, n_per_class=args.n_per_class, input_scale=args.input_scale,
        progress=not args.quiet, log=log,
    )
    for line in headline(res):
        log(line)
    files = ", ".join(str(Path(args.out) / f) for f in res["files"])
    log(f"wrote {files} in {time.perf_counter() - t0:.1f} s")
    return 0
