"""``neuron-importance demo``: train a small CNN and compare every attribution method.

Trains the DeepLIFT paper's MNIST CNN on the shared MNIST files (or, when they are not there, a
small CNN on scikit-learn's 8x8 digits), caches the weights under ``.cache/neuron-importance/``
so a rerun takes seconds, explains a handful of test images with every method and writes
``report.html`` with the heatmaps, a table of time per example and completeness error, and the
model's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: Training settings (part of the cache key). The full MNIST run trains in about 50 s on one
#: CPU thread (~6 s per epoch) and reaches 99.04 % test accuracy; the digits run in ~15 s, 97 %.
SETTINGS: dict[tuple[str, bool], dict[str, Any]] = {
    ("mnist", False): {"n_train": 60000, "epochs": 8, "batch_size": 128, "lr": 1e-3, "seed": 0},
    ("mnist", True): {"n_train": 5000, "epochs": 2, "batch_size": 64, "lr": 1e-3, "seed": 0},
    ("digits", False): {"epochs": 40, "batch_size": 64, "lr": 2e-3, "seed": 0},
    ("digits", True): {"epochs": 15, "batch_size": 64, "lr": 3e-3, "seed": 0},
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="train (or load from cache) a small CNN and compare every method in report.html",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument("--out", default="demo-output", metavar="DIR", help="output folder")
    p.add_argument(
        "--quick", action="store_true", help="train on a small subset (smoke test, < 30 s)"
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the MNIST IDX files (or the shared data folder holding mnist/); "
        "default: the shared data folder (../shared/data or $NEURON_IMPORTANCE_DATA). Without "
        "MNIST the demo uses scikit-learn's 8x8 digits.",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where trained weights are cached (default .cache/neuron-importance in the "
        "current folder)",
    )
    p.add_argument(
        "--n-examples", type=int, metavar="K", help="test images to explain (default 6; 4 quick)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="CPU threads for torch (default 1: these small layers gain little from more, and "
        "on a busy machine several threads waiting on each other train several times slower)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- data


@dataclass
class DemoData:
    name: str  # "mnist" or "digits"
    spec: str
    description: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


_MNIST_MARKERS = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")


def find_mnist(data_dir: str | Path | None) -> Path | None:
    """The folder holding the MNIST IDX files, or ``None``."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data-dir {root} does not exist")
        candidates = [root, root / "mnist"]
    else:
        from neuron_importance.data.paths import default_data_dir

        found = default_data_dir()
        candidates = [found / "mnist"] if found is not None else []
    for c in candidates:
        if any((c / m).is_file() for m in _MNIST_MARKERS):
            return c
    return None


def load_data(data_dir: str | Path | None, quick: bool, log) -> DemoData:
    mnist_dir = find_mnist(data_dir)
    if mnist_dir is not None:
        from neuron_importance.data.mnist import load_mnist

        cfg = SETTINGS[("mnist", quick)]
        train_x, train_y = load_mnist("train", data_dir=mnist_dir, limit=cfg["n_train"])
        test_x, test_y = load_mnist("test", data_dir=mnist_dir, limit=1000 if quick else None)
        log(f"MNIST from {mnist_dir}: {len(train_x)} training / {len(test_x)} test images")
        return DemoData(
            "mnist", "mnist_cnn", f"MNIST ({mnist_dir})", train_x, train_y, test_x, test_y
        )
    from neuron_importance.data.digits import load_digits_dataset

    looked = str(data_dir) if data_dir is not None else "the shared data folder"
    log(
        f"MNIST not found in {looked}; using scikit-learn's 8x8 digits with digits_cnn instead"
    )
    train_x, train_y, test_x, test_y = load_digits_dataset(seed=0)
    return DemoData(
        "digits",
        "digits_cnn",
        "scikit-learn 8x8 digits (MNIST not found)",
        train_x,
        train_y,
        test_x,
        test_y,
    )


# ----------------------------------------------------------------------------- methods


@dataclass
class MethodResult:
    label: str
    attributions: Tensor
    seconds: float
    completeness: float | None  # max |sum(attr) - (f(x) - f(ref))|, None where undefined
    reference: str


def _output_change(model: nn.Module, x: Tensor, refs: Tensor, target: Tensor) -> Tensor:
    """``f_t(x) - mean_r f_t(ref_r)`` by plain forward passes (independent of the methods)."""
    with torch.no_grad():
        fx = model(x).gather(1, target.view(-1, 1)).view(-1)
        fr = model(refs).mean(dim=0)  # refs shared by every input: (R, ...)
        return fx - fr[target]


def run_methods(
    model: nn.Module, x: Tensor, target: Tensor, references: Tensor, n_steps: int
) -> list[MethodResult]:
    import neuron_importance as ni

    zero = torch.zeros_like(x[:1])
    r = references.shape[0]
    plans = [
        ("Saliency", lambda: ni.Saliency(model).attribute(x, target=target), None, "-"),
        ("Input x Gradient", lambda: ni.InputXGradient(model).attribute(x, target=target), None,
         "-"),
        ("Guided Backprop", lambda: ni.GuidedBackprop(model).attribute(x, target=target), None,
         "-"),
        (
            f"Integrated Gradients ({n_steps} steps)",
            lambda: ni.IntegratedGradients(model).attribute(
                x, baselines=zero, target=target, n_steps=n_steps
            ),
            zero,
            "black image",
        ),
        (
            "DeepLIFT Rescale",
            lambda: ni.DeepLift(model, rule="rescale").attribute(x, baselines=zero, target=target),
            zero,
            "black image",
        ),
        (
            "DeepLIFT RevealCancel",
            lambda: ni.DeepLift(model, rule="reveal_cancel").attribute(
                x, baselines=zero, target=target
            ),
            zero,
            "black image",
        ),
        (
            f"DeepLiftShap ({r} refs)",
            lambda: ni.DeepLiftShap(model, rule="rescale").attribute(
                x, baselines=references, target=target
            ),
            references,
            f"{r} training images",
        ),
    ]
    results = []
    for label, fn, refs, ref_text in plans:
        t0 = time.perf_counter()
        attr = fn()
        seconds = time.perf_counter() - t0
        attr = attr.detach()
        completeness = None
        if refs is not None:
            change = _output_change(model, x, refs, target)
            err = attr.reshape(len(x), -1).sum(dim=1) - change
            completeness = float(err.abs().max())
        results.append(MethodResult(label, attr, seconds, completeness, ref_text))
    return results


# ----------------------------------------------------------------------------- command


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ValueError("--threads must be positive")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous)


def _run(args: argparse.Namespace) -> int:
    from neuron_importance.models import cached_model, evaluate_accuracy, train_classifier
    from neuron_importance.plots.images import plot_image_attributions
    from neuron_importance.plots.report import write_html_report

    t_start = time.perf_counter()
    quick = bool(args.quick)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    data = load_data(args.data_dir, quick, log)
    cfg = dict(SETTINGS[(data.name, quick)])
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path.cwd() / ".cache" / "neuron-importance"
    config = {"dataset": data.name, "n_train": len(data.train_x), **cfg}

    trained = {}

    def train(model: nn.Module) -> nn.Module:
        log(
            f"training {data.spec} on {len(data.train_x)} images: {cfg['epochs']} epoch(s), "
            f"batch {cfg['batch_size']}, Adam lr {cfg['lr']}"
        )
        t0 = time.perf_counter()
        train_classifier(
            model,
            data.train_x,
            data.train_y,
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            lr=cfg["lr"],
            seed=cfg["seed"],
            progress=not args.quiet,
        )
        trained["seconds"] = time.perf_counter() - t0
        return model

    model = cached_model(data.spec, config, train, cache_dir, log=log)
    accuracy = evaluate_accuracy(model, data.test_x, data.test_y)
    train_note = (
        f"trained in {trained['seconds']:.1f} s" if trained else "loaded from the weight cache"
    )
    log(f"{data.spec}: test accuracy {100 * accuracy:.2f} % on {len(data.test_x)} images "
        f"({train_note})")

    k = args.n_examples or (4 if quick else 6)
    if k < 1:
        raise ValueError("--n-examples must be positive")
    x = data.test_x[:k].clone()
    labels = data.test_y[:k]
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    gen = torch.Generator().manual_seed(0)
    n_refs = 3 if quick else 5
    references = data.train_x[torch.randperm(len(data.train_x), generator=gen)[:n_refs]].clone()
    n_steps = 20 if quick else 50

    log(f"explaining {k} test images (target: the predicted class) with 7 methods")
    results = run_methods(model, x, pred, references, n_steps)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = [f"label {int(a)}, pred {int(b)}" for a, b in zip(labels, pred)]
    figure = plot_image_attributions(
        x,
        {r.label: r.attributions for r in results},
        out / "attributions.png",
        titles=titles,
        suptitle=f"{data.spec} on {data.name}: attributions to the predicted class",
    )
    rows = [
        {
            "method": r.label,
            "reference": r.reference,
            "time per example (ms)": round(1000 * r.seconds / k, 2),
            "max |completeness error|": (
                "n/a (not defined)" if r.completeness is None else float(f"{r.completeness:.3g}")
            ),
        }
        for r in results
    ]
    model_text = (
        f"Data: {data.description}. Model: {data.spec}, {len(data.train_x)} training images, "
        f"{cfg['epochs']} epoch(s), batch {cfg['batch_size']}, Adam lr {cfg['lr']}, seed "
        f"{cfg['seed']} ({train_note}).\n\n"
        f"Test accuracy: {100 * accuracy:.2f} % on {len(data.test_x)} test images."
        + ("\n\nQuick mode: trained on a small subset for a smoke test." if quick else "")
    )
    sections = [
        {"heading": "Model", "text": model_text},
        {
            "heading": "Attributions",
            "text": f"The first {k} test images, each explained for the class the model "
            "predicts. Red pixels raise that class's logit, blue ones lower it.",
            "images": [figure],
        },
        {
            "heading": "Methods",
            "text": "Completeness error: the largest |sum of attributions - (f(x) - f(x'))| "
            "over the examples, with f the predicted class's logit and x' the reference (for "
            "DeepLiftShap the mean output over the references), computed here from plain "
            "forward passes. Saliency, Input x Gradient and Guided Backprop have no reference, "
            "so completeness is not defined for them. Times are for the whole batch divided by "
            f"its size, including each method's setup, on {torch.get_num_threads()} CPU "
            "thread(s).",
            "table": rows,
        },
    ]
    report = write_html_report(out / "report.html", "neuron-importance demo", sections)
    results_json = {
        "dataset": data.name,
        "model": data.spec,
        "config": config,
        "test_accuracy": accuracy,
        "n_test": len(data.test_x),
        "from_cache": not trained,
        "train_seconds": trained.get("seconds"),
        "methods": rows,
        "total_seconds": round(time.perf_counter() - t_start, 2),
    }
    (out / "results.json").write_text(json.dumps(results_json, indent=2) + "\n", encoding="utf-8")

    width = max(len(r["method"]) for r in rows)
    log(f"{'method':<{width}}  {'ms/example':>10}  max |completeness error|")
    for r in rows:
        log(f"{r['method']:<{width}}  {r['time per example (ms)']:>10.2f}  "
            f"{r['max |completeness error|']}")
    log(f"wrote {report} and {figure.name} in {time.perf_counter() - t_start:.1f} s")
    return 0
