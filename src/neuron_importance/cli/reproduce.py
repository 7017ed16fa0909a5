"""``neuron-importance reproduce EXPERIMENT``: re-run a paper's experiment and write a report.

Each experiment is a sub-subcommand registered in :data:`EXPERIMENTS`; it gets the options
every experiment shares (``--quick``, ``--out``, ``--data-dir``, ``--seed``, ``--cache-dir``,
``--threads``, ``--quiet``) plus its own, and writes ``results.json``, ``report.md`` and PNG
figures to ``--out``. The experiment code lives in :mod:`neuron_importance.experiments`.

To add one (e.g. ``deeplift-mnist``, ``continual``), write a module
``cli/reproduce_<name>.py`` defining ``NAME = "<name>"`` and a function
``add(subparsers) -> parser`` that adds the parser with :func:`add_experiment_parser` and sets
``func``; it is discovered and listed in :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reproduce",
        help="re-run a paper's experiment (neuron-ig, ...) and write a report",
        description="Re-run an experiment of the papers this project implements and write "
        "results.json, report.md and PNG figures to --out. Run 'neuron-importance reproduce "
        "EXPERIMENT --help' for an experiment's options.",
    )
    experiments = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for add in EXPERIMENTS.values():
        add(experiments)
    p.set_defaults(func=_missing_experiment, _reproduce_parser=p)
    return p


def _missing_experiment(args: argparse.Namespace) -> int:
    args._reproduce_parser.print_help(sys.stderr)
    return 2


def add_experiment_parser(
    subparsers: Any, name: str, help_text: str, description: str, quick_text: str
) -> argparse.ArgumentParser:
    """The parser of one experiment, with the options every experiment shares."""
    p = subparsers.add_parser(name, help=help_text, description=description)
    p.add_argument("--quick", action="store_true", help=quick_text)
    p.add_argument(
        "--out", default=f"reproduce-output/{name}", metavar="DIR",
        help=f"output folder (default reproduce-output/{name})",
    )
    p.add_argument(
        "--data-dir", metavar="DIR",
        help="folder with the data files (or the shared data folder holding them); default: "
        "the shared data folder (../shared/data or $NEURON_IMPORTANCE_DATA)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the example choice and the random controls (default 0)")
    p.add_argument(
        "--cache-dir", metavar="DIR",
        help="where trained weights are cached (default .cache/neuron-importance in the "
        "current folder; shared with the demo command)",
    )
    p.add_argument(
        "--threads", type=int, default=1, metavar="N",
        help="CPU threads for torch (default 1: small layers gain little from more, and "
        "timings on a shared machine are steadier)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _with_threads(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        if args.threads < 1:
            raise ValueError("--threads must be positive")
        previous = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            return run(args)
        finally:
            torch.set_num_threads(previous)

    return wrapped


# ----------------------------------------------------------------------------- neuron-ig


def _add_neuron_ig(subparsers: Any) -> argparse.ArgumentParser:
    p = add_experiment_parser(
        subparsers,
        "neuron-ig",
        help_text="neuron importance in the MNIST CNN: Total Conductance vs DeepLIFT vs "
        "activation (agreement, ablation curves, time per example)",
        description="Train (or load the cached) MNIST CNN, score the neurons of a hidden conv "
        "layer (per channel) and of the dense hidden layer with Total Conductance (several "
        "n_steps), LayerDeepLift (Rescale, RevealCancel), activation and gradient x "
        "activation; report rank agreement, top-10 overlap, ablation curves against random "
        "orders and the time per example. Writes results.json, report.md, "
        "ablation_curves.png and rank_agreement.png.",
        quick_text="20 images, 5 and 20 steps, k up to 20; uses the cached full model when "
        "there is one, else trains on 5000 images (under 3 minutes on 2 cores)",
    )
    p.add_argument("--n-examples", type=int, metavar="N",
                   help="test images to score (default 200; 20 with --quick)")
    p.set_defaults(func=_with_threads(_run_neuron_ig))
    return p


def _run_neuron_ig(args: argparse.Namespace) -> int:
    from neuron_importance.experiments.neuron_ig import headline, reproduce

    if args.n_examples is not None and args.n_examples < 1:
        raise ValueError("--n-examples must be positive")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    res = reproduce(
        args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
        cache_dir=args.cache_dir, n_examples=args.n_examples, progress=not args.quiet, log=log,
    )
    for line in headline(res):
        log(line)
    files = ", ".join(str(Path(args.out) / f) for f in res["files"])
    log(f"wrote {files} in {time.perf_counter() - t0:.1f} s")
    return 0


#: experiment name -> function adding its parser (in ``--help`` order)
EXPERIMENTS: dict[str, Callable[[Any], argparse.ArgumentParser]] = {
    "neuron-ig": _add_neuron_ig,
}


def _discover() -> None:
    """Add the experiments of the modules ``cli/reproduce_*.py`` (each defines ``NAME``, ``add``).

    One module per experiment keeps the experiments independent of each other.
    """
    import importlib
    import pkgutil

    from neuron_importance import cli

    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda m: m.name):
        if info.name.startswith("reproduce_"):
            module = importlib.import_module(f"neuron_importance.cli.{info.name}")
            EXPERIMENTS.setdefault(module.NAME, module.add)


_discover()
