"""``neuron-importance reproduce continual``: the NAI task-order robustness study (issue 5)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from neuron_importance.cli.attribute import _option_value
from neuron_importance.cli.reproduce import _with_threads, add_experiment_parser
from neuron_importance.experiments.continual import SELECTIONS

NAME = "continual"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add(subparsers: Any) -> argparse.ArgumentParser:
    p = add_experiment_parser(
        subparsers,
        NAME,
        help_text="continual learning: NAI vs fine-tuning, joint, L2, EWC, online EWC, SI, "
        "MAS over several task orders on Split MNIST, Split Fashion-MNIST, Permuted MNIST",
        description="Tune every method's strength on task order 0 with the validation split, "
        "freeze it, run every method over the same task orders (identity, reverse, seeded "
        "permutations), run class-incremental learning for a few methods and an ablation of "
        "the NAI options. Each finished run is appended to DIR/runs.jsonl and each run "
        "checkpoints after every task, so the same command resumes an interrupted study. "
        "Writes results.json, report.md, acc_by_order.png, accuracy_matrices.png and "
        "task_curves.png.",
        quick_text="5000 training images, 3 epochs per task, Permuted MNIST with 3 tasks, "
        "2 orders, 2-point grids, a 64-64 MLP (under 3 minutes on 2 cores)",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes for independent runs (1 torch thread each; "
                   "default 1)")
    p.add_argument("--benchmarks", type=_names, metavar="B1,B2",
                   help="subset of split-mnist, split-fashion-mnist, permuted-mnist")
    p.add_argument("--methods", type=_names, metavar="M1,M2",
                   help="subset of finetune, joint, l2, ewc, online-ewc, si, mas, nai, nai-tc")
    p.add_argument("--orders", type=int, metavar="K", help="task orders per benchmark")
    p.add_argument("--no-ablation", action="store_true",
                   help="skip the NAI ablation (no variant is run, not even the default)")
    p.add_argument("--epochs", type=_positive, metavar="N",
                   help="epochs per task on every benchmark (default: 6 on the Split "
                   "benchmarks, 3 on Permuted MNIST); runs at other epoch counts are kept "
                   "apart in runs.jsonl")
    p.add_argument("--no-class-il", action="store_true",
                   help="skip the class-incremental runs")
    p.add_argument("--seeds", type=_positive, metavar="N",
                   help="training seeds per task order (default 1): --seed, --seed + 1, ...; "
                   "tuning averages over them and each order's ACC is their mean; runs of "
                   "seed --seed are shared with a 1-seed study. (--seed also draws the "
                   "seeded task orders, so another --seed is a fresh study: new orders "
                   "after the identity and the reverse, new training seeds)")
    p.add_argument("--dropout", type=_fraction, metavar="P",
                   help="dropout after each hidden layer for every method (default 0; the "
                   "UCL / HAT MLPs use 0.5); runs with other values are kept apart in "
                   "runs.jsonl")
    p.add_argument("--head-warmup", type=_nonnegative, metavar="N",
                   help="epochs that train each new task's head alone, the trunk frozen, "
                   "before the task's full training, for every method (default 0; task "
                   "heads only: not with permuted-mnist or class-IL runs); runs with it are "
                   "kept apart in runs.jsonl")
    p.add_argument("--hidden", type=_widths, metavar="W1,W2",
                   help="hidden layer widths of the MLP (default 400,400, as UCL and Hsu et "
                   "al.); runs at other widths are kept apart in runs.jsonl")
    p.add_argument("--conv", type=_widths, metavar="C1,C2",
                   help="put 5x5 convolution + 2x2 max-pool blocks with these output channels "
                   "in front of the --hidden layers, for every method (a LeNet-style CNN, "
                   "e.g. --conv 16,32 --hidden 256; default none: the MLP); runs with it are "
                   "kept apart in runs.jsonl")
    p.add_argument("--grid", type=_grid, action="append", metavar="METHOD:PARAM=V1,V2",
                   help="replace one method's tuning grid, e.g. nai:lam=0.003,0.01,0.03 "
                   "(repeatable; a single value fixes the strength: order 0 is still run "
                   "with it, and nothing else is tuned; two parameters of one method, e.g. "
                   "nai-tc:lam=0.1,0.3 and nai-tc:floor=0,0.01, are tuned jointly over "
                   "their product)")
    p.add_argument("--nai-option", type=_option, action="append",
                   metavar="[METHOD:]KEY=VALUE",
                   help="set one NAIOptions switch for nai and nai-tc, e.g. "
                   "conductance_target=logit (nai-tc's default is centred), or for one of "
                   "them, e.g. nai:norm=max (over the switches for both); VALUE read as "
                   "JSON, else text; repeatable; "
                   "checked before training; runs "
                   "with other options are kept apart in runs.jsonl)")
    p.add_argument("--max-extensions", type=_nonnegative, metavar="N",
                   help="how many times tuning may extend a grid whose chosen point is on its "
                   "edge by one step past that edge, the same rule for every method "
                   "(default 2; 0 keeps the grids as given). It only adds tuning runs, so "
                   "raising it on a finished folder trains just the new points and, where "
                   "the choice moves, their orders")
    p.add_argument("--selection", choices=SELECTIONS,
                   help="how tuning picks the frozen grid point from the validation ACC on "
                   "order 0 (or the --tune-orders orders): best (default, the highest) or "
                   "one-se (the one-standard-error rule: the strongest penalty whose "
                   "validation ACC is within one standard error over the training seeds of "
                   "the highest; needs --seeds >= 2). It only "
                   "picks among runs, so a folder's runs serve either rule")
    p.add_argument("--tune-orders", type=_positive, metavar="K",
                   help="tune every method on the first K of the study's orders (order 0 the "
                   "identity, order 1 the reverse, then the seeded ones) and freeze the point "
                   "with the best validation ACC averaged over them (default 1: order 0 "
                   "alone). Not part of a run's key: the extra tuning runs are the main "
                   "runs of those orders at each grid point, and reused as such")
    p.add_argument("--device", metavar="DEV",
                   help="where runs train: cpu (default) or cuda[:N]; checked before training. "
                   "Runs keep their keys (the protocol is the same) and each record names "
                   "its device; with --jobs N the N workers share the GPU")
    p.set_defaults(func=_with_threads(_run))
    return p


def _option(text: str) -> tuple[str | None, str, Any]:
    """``[METHOD:]KEY=VALUE`` as (method or None for both NAI variants, key, value)."""
    head, sep, value = text.partition("=")
    method, colon, key = head.rpartition(":")
    if not (sep and key.strip() and value.strip()) or (colon and not method.strip()):
        raise argparse.ArgumentTypeError(
            f"must be KEY=VALUE or METHOD:KEY=VALUE such as conductance_target=centred or "
            f"nai:norm=max, got {text!r}")
    if colon and method.strip() not in ("nai", "nai-tc"):
        raise argparse.ArgumentTypeError(
            f"only nai and nai-tc take NAI options, got method {method.strip()!r} in {text!r}")
    return (method.strip() or None), key.strip(), _option_value(value.strip())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(t) for t in _names(text))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers (layer widths such as 400,400, or "
            f"channel counts such as 16,32), got {text!r}")
    return widths


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _grid(text: str) -> tuple[str, dict[str, list[float]]]:
    method, sep, rest = text.partition(":")
    param, sep2, values = rest.partition("=")
    try:
        vals = [float(v) for v in _names(values)]
    except ValueError:
        vals = []
    if not (sep and sep2 and method.strip() and param.strip() and vals):
        raise argparse.ArgumentTypeError(
            f"must be METHOD:PARAM=V1,V2,... such as nai:lam=0.01,0.1, got {text!r}")
    return method.strip(), {param.strip(): vals}


def _run(args: argparse.Namespace) -> int:
    from neuron_importance.experiments.continual import headline, reproduce

    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    overrides: dict[str, Any] = {"jobs": args.jobs, "n_orders": args.orders,
                                 "seeds": args.seeds}
    if args.benchmarks:
        overrides["benchmarks"] = args.benchmarks
        overrides["ablation_benchmarks"] = None
    if args.methods:
        overrides["methods"] = args.methods
    if args.no_ablation:
        overrides["ablation"] = []
    if args.no_class_il:
        overrides["class_il_methods"] = []
    if args.hidden is not None:
        overrides["hidden"] = args.hidden
    if args.conv is not None:
        overrides["conv"] = args.conv
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    if args.head_warmup is not None:
        overrides["head_warmup"] = args.head_warmup
    if args.epochs is not None:
        from neuron_importance.continual import BENCHMARKS

        overrides["epochs"] = {b: args.epochs for b in (args.benchmarks or BENCHMARKS)}
    if args.nai_option:
        overrides["nai_options"] = {k: v for m, k, v in args.nai_option if m is None}
        by_method: dict[str, dict[str, Any]] = {}
        for m, k, v in args.nai_option:
            if m is not None:
                by_method.setdefault(m, {})[k] = v
        overrides["method_nai_options"] = by_method
    if args.device is not None:
        overrides["device"] = args.device
    if args.selection is not None:
        overrides["selection"] = args.selection
    if args.max_extensions is not None:
        overrides["max_extensions"] = args.max_extensions
    if args.tune_orders is not None:
        overrides["tune_orders"] = args.tune_orders
    grids: dict[str, dict[str, list[float]]] | None = None
    if args.grid:
        # one --grid per parameter: nai-tc:lam=... and nai-tc:floor=... tune both jointly
        grids = {}
        for method, grid in args.grid:
            grids.setdefault(method, {}).update(grid)
    res = reproduce(args.out, quick=args.quick, data_dir=args.data_dir, seed=args.seed,
                    progress=not args.quiet, log=log, grid_overrides=grids, **overrides)
    for line in headline(res):
        log(line)
    files = ", ".join(str(Path(args.out) / f) for f in res["files"])
    log(f"wrote {files} in {time.perf_counter() - t0:.1f} s")
    return 0
