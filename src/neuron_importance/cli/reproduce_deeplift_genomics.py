"""``neuron-importance reproduce deeplift-genomics``: the DeepLIFT paper's motif simulation."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from neuron_importance.cli.reproduce import _with_threads, add_experiment_parser

NAME = "deeplift-genomics"


def add(subparsers: Any) -> argparse.ArgumentParser:
    p = add_experiment_parser(
        subparsers,
        NAME,
        help_text="DeepLIFT genomics simulation: find the embedded GATA/TAL1 motifs "
        "(false-negative rate vs the paper, auPRC, Fig. 5-style scatter, logos)",
        description="Load the DeepLIFT authors' 8000 simulated sequences and their test "
        "split, train (or load the cached) genomics CNN, report auROC per task, score the "
        "test sequences with GBP x dinput, grad x dinput, IG-10, DeepLIFT Rescale, "
        "RevealCancel, genomics_default and genomics_default over dinucleotide-shuffled "
        "references (with hypothetical contributions), and compare the false-negative rates "
        "at strong PWM hits with the paper's. Writes results.json, report.md, "
        "scatter_GATA.png, scatter_TAL1.png, logos/*.png, scores.npz, hypothetical.npy. "
        "--data-dir is the folder with sequences.simdata.gz and test.txt.gz (or the shared "
        "data folder holding deeplift-genomics/).",
        quick_text="train on 2000 sequences for 3 epochs, score 120 test sequences with 5 "
        "shuffled references (under 3 minutes on 2 cores)",
    )
    p.add_argument("--epochs", type=int, metavar="N",
                   help="maximum training epochs (default 12, early stopping on the "
                   "validation loss; 3 with --quick)")
    p.add_argument("--n-test", type=int, metavar="N",
                   help="test sequences to score (default all 800; 120 with --quick); auROC "
                   "always uses the whole test split")
    # training a conv net on 6480 sequences: use the machine's cores unless told otherwise
    p.set_defaults(threads=max(1, min(4, os.cpu_count() or 1)),
                   func=_with_threads(_run))
    return p


def _run(args: argparse.Namespace) -> int:
    from neuron_importance.experiments.deeplift_genomics import headline, reproduce

    for name in ("epochs", "n_test"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    try:
        res = reproduce(
            args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
            cache_dir=args.cache_dir, epochs=args.epochs, n_test=args.n_test,
            progress=not args.quiet, log=log,
        )
    except FileNotFoundError as err:
        print(f"neuron-importance reproduce {NAME}: {err}", file=sys.stderr)
        return 2
    for line in headline(res):
        log(line)
    log(f"wrote {Path(args.out)}/ (results.json, report.md, {len(res['files']) - 2} more "
        f"files) in {time.perf_counter() - t0:.1f} s")
    return 0
