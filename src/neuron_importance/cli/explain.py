"""``neuron-importance explain``: attributions for a model on inputs read from files.

Writes ``attributions.npy`` (shaped like the inputs), ``targets.npy``, ``delta.npy`` (the
completeness residual, for methods that have one), ``summary.json`` and pictures: a heatmap
figure for images, a contribution logo per sequence for one-hot DNA, bar charts for tabular rows.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

METHODS = (
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "integrated_gradients",
    "deeplift",
    "deeplift_shap",
)
_ALIASES = {
    "grad": "saliency",
    "gradient": "saliency",
    "ixg": "input_x_gradient",
    "grad_x_input": "input_x_gradient",
    "gradient_x_input": "input_x_gradient",
    "inputxgradient": "input_x_gradient",
    "gbp": "guided_backprop",
    "guidedbackprop": "guided_backprop",
    "ig": "integrated_gradients",
    "integratedgradients": "integrated_gradients",
    "dl": "deeplift",
    "deepshap": "deeplift_shap",
    "deepliftshap": "deeplift_shap",
}
RULES = ("rescale", "reveal_cancel", "genomics_default")
_BASELINE_METHODS = ("integrated_gradients", "deeplift", "deeplift_shap")
_RULE_METHODS = ("deeplift", "deeplift_shap")
#: methods that replace the backward pass of individual operations: Python models only
_PYTHON_ONLY = ("guided_backprop", "deeplift", "deeplift_shap")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas"}
TEXT_SUFFIXES = {".csv", ".tsv", ".txt"}
#: DNA background frequencies A, C, G, T (the DeepLIFT genomics reference)
DNA_BACKGROUND = (0.3, 0.2, 0.2, 0.3)

USAGE_EXAMPLES = """\
examples:
  neuron-importance explain --model mlp:4-16-3 --weights w.safetensors --inputs x.npy \\
      --method integrated_gradients --target pred
  neuron-importance explain --model genomics_cnn --weights g.safetensors --inputs seqs.fa \\
      --method deeplift_shap --rule genomics_default --baseline shuffle:10 --target 0
  neuron-importance explain --model model.ts --inputs digits/ --method saliency
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="attribute a model's outputs to its inputs read from files",
        description="Attribute a model's outputs to its inputs (read from files) with one "
        "method; writes attributions.npy, targets.npy, delta.npy (completeness residual, where "
        "the method has one), summary.json and pictures to --out.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="mnist_cnn, digits_cnn, genomics_cnn, mlp:IN-H1-...-OUT, or the path of a "
        "TorchScript file / ExportedProgram (.pt2). DeepLIFT and guided backprop need a "
        "Python model (a name, not TorchScript); gradient methods work on all.",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="weights for a named model: .safetensors, or a .pt/.pth state dict (read with "
        "weights_only=True; pickled objects are refused)",
    )
    p.add_argument(
        "--inputs",
        required=True,
        metavar="FILE",
        help=".npy, .npz (first array or --key; values used as stored, cast to float32), .csv, an image (PNG/JPEG; pixels scaled to "
        "[0, 1]), a folder of images, or FASTA (.fa/.fasta/.fna, one-hot encoded)",
    )
    p.add_argument("--key", help="array name inside an .npz file (default: the first)")
    p.add_argument(
        "--method",
        required=True,
        metavar="NAME",
        help=f"one of: {', '.join(METHODS)}",
    )
    p.add_argument(
        "--target",
        default="pred",
        metavar="INT|pred",
        help="output index to explain, or 'pred' for each example's predicted class "
        "(default; ignored for single-output models)",
    )
    p.add_argument(
        "--baseline",
        metavar="zeros|NUMBER|FILE.npy|shuffle:K|background",
        help="reference for integrated_gradients/deeplift (default zeros): a constant, a .npy "
        "of one input-shaped reference or one per input; for deeplift_shap a .npy of "
        "references (R, ...) or (N, R, ...), or shuffle:K for K dinucleotide shuffles of each "
        "DNA sequence (the default for DNA); 'background' is the DNA background "
        f"{DNA_BACKGROUND} per position",
    )
    p.add_argument("--rule", choices=RULES, help="DeepLIFT rule (default rescale)")
    p.add_argument(
        "--n-steps", type=int, metavar="N", help="integrated gradients steps (default 50)"
    )
    p.add_argument(
        "--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)"
    )
    p.add_argument(
        "--out", default="explain-output", metavar="DIR", help="output folder (default %(default)s)"
    )
    p.add_argument("--limit", type=int, metavar="N", help="explain only the first N inputs")
    p.add_argument(
        "--image-mode",
        choices=("auto", "L", "RGB"),
        default="auto",
        help="channels for image inputs: auto (1 channel when every image is grey), L or RGB",
    )
    p.add_argument(
        "--max-plots", type=int, default=8, metavar="K", help="pictures for the first K inputs"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for shuffled references")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    x: Tensor  # float32, batch first
    kind: str  # "dna", "image" or "array"
    names: list[str]


def normalise_method(name: str) -> str:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))
    if key in METHODS:
        return key
    close = difflib.get_close_matches(key, METHODS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown method {name!r}{hint} (choose from {', '.join(METHODS)})")


def is_onehot_dna(x: Tensor) -> bool:
    """True for ``(N, 4, L)`` tensors of 0/1 with at most one 1 per column."""
    if x.dim() != 3 or x.shape[1] != 4 or x.numel() == 0:
        return False
    binary = bool(((x == 0) | (x == 1)).all())
    return binary and bool((x.sum(dim=1) <= 1).all())


def _as_float_tensor(arr: np.ndarray, what: str) -> Tensor:
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{what} holds {arr.dtype} values, not numbers")
    if arr.ndim == 0:
        raise ValueError(f"{what} is a scalar; inputs must be batch-first arrays")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _load_array(path: Path, key: str | None) -> Tensor:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if not names:
                raise ValueError(f"{path} holds no arrays")
            if key is None:
                key = names[0]
            elif key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {', '.join(names)}")
            try:
                arr = loaded[key]
            except ValueError as err:
                raise ValueError(f"cannot read array {key!r} of {path}: {err}") from None
        return _as_float_tensor(arr, f"array {key!r} of {path}")
    if key is not None:
        raise ValueError("--key applies to .npz files only")
    return _as_float_tensor(loaded, str(path))


def _load_text(path: Path) -> Tensor:
    delimiter = "\t" if path.suffix == ".tsv" else ("," if path.suffix == ".csv" else None)
    try:
        arr = np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError:
        try:  # a header line
            arr = np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2, skiprows=1)
        except ValueError as err:
            raise ValueError(f"cannot read {path} as a numeric table: {err}") from None
    return _as_float_tensor(arr, str(path))


def _load_images(paths: list[Path], mode: str) -> Tensor:
    try:
        from PIL import Image
    except ImportError as err:
        raise ValueError("reading images needs Pillow (pip install pillow)") from err
    arrays = []
    for p in paths:
        try:
            with Image.open(p) as img:
                arrays.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        except OSError as err:
            raise ValueError(f"cannot read image {p}: {err}") from None
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        first, other = arrays[0].shape, next(a.shape for a in arrays if a.shape != arrays[0].shape)
        raise ValueError(
            f"images have different sizes ({first[1]}x{first[0]} and {other[1]}x{other[0]}); "
            "resize them to one size"
        )
    stack = np.stack(arrays)  # (N, H, W, 3)
    grey = bool((stack[..., 0] == stack[..., 1]).all() and (stack[..., 1] == stack[..., 2]).all())
    if mode == "auto":
        mode = "L" if grey else "RGB"
    if mode == "L":
        if grey:
            stack = stack[..., :1]
        else:  # luminance, as PIL computes it
            stack = np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in arrays])
            stack = stack[..., None]
    return torch.from_numpy(stack.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _is_fasta(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in FASTA_SUFFIXES


def load_inputs(
    path: str | Path, key: str | None = None, image_mode: str = "auto", limit: int | None = None
) -> Inputs:
    """Read inputs for ``explain``; see the ``--inputs`` help for the formats."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inputs file not found: {path}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be positive, got {limit}")
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(
                f"{path} is a folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files = files[:limit]
        return Inputs(_load_images(files, image_mode), "image", [p.name for p in files])
    suffix = path.suffix.lower()
    if _is_fasta(path):
        from neuron_importance.genomics.onehot import one_hot_encode, read_fasta

        records = read_fasta(path)[:limit]
        names = [name or f"seq{i}" for i, (name, _) in enumerate(records)]
        try:
            x = one_hot_encode([seq for _, seq in records])
        except ValueError as err:
            msg = str(err)
            if msg.startswith("sequence "):  # name the record, not just its index
                idx_text = msg.split(":", 1)[0].split()[1]
                if idx_text.isdigit():
                    msg = f"record {names[int(idx_text)]!r} ({msg})"
            raise ValueError(f"{path}: {msg}") from None
        return Inputs(x, "dna", names)
    if suffix in IMAGE_SUFFIXES:
        return Inputs(_load_images([path], image_mode), "image", [path.name])
    if suffix in (".npy", ".npz"):
        x = _load_array(path, key)
    elif suffix in TEXT_SUFFIXES:
        x = _load_text(path)
    else:
        raise ValueError(
            f"don't know how to read {path}: use .npy, .npz, .csv/.tsv, an image "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images or FASTA "
            f"({', '.join(sorted(FASTA_SUFFIXES))})"
        )
    if limit is not None:
        x = x[:limit]
    if x.shape[0] == 0:
        raise ValueError(f"{path} holds no examples")
    kind = "dna" if is_onehot_dna(x) else ("image" if x.dim() == 4 else "array")
    return Inputs(x, kind, [str(i) for i in range(x.shape[0])])


# ----------------------------------------------------------------------------- baselines


@dataclass
class Baseline:
    kind: str  # "zeros", "value", "file", "shuffle", "background"
    value: float = 0.0
    array: Tensor | None = None
    shuffles: int = 0
    text: str = "zeros"


def parse_baseline(text: str | None, method: str, inputs: Inputs, limit: int | None) -> Baseline:
    if text is None:
        if method == "deeplift_shap" and inputs.kind == "dna":
            return Baseline("shuffle", shuffles=10, text="shuffle:10")
        if method == "deeplift_shap":
            raise ValueError(
                "deeplift_shap needs references: --baseline FILE.npy with (R, ...) shared or "
                "(N, R, ...) per-input references (or shuffle:K for one-hot DNA)"
            )
        return Baseline("zeros")
    if method not in _BASELINE_METHODS:
        raise ValueError(f"--baseline does not apply to {method} (it takes no reference)")
    t = text.strip()
    if t.lower() in ("zeros", "zero", "0"):
        return Baseline("zeros", text="zeros")
    if t.lower() == "background":
        if inputs.kind != "dna":
            raise ValueError("--baseline background is for one-hot DNA inputs (N, 4, L)")
        return Baseline("background", text=t)
    if t.lower().startswith("shuffle"):
        _, _, k = t.partition(":")
        if not k.strip().isdigit() or int(k) < 1:
            raise ValueError(f"bad --baseline {text!r}: expected shuffle:K with K >= 1")
        if inputs.kind != "dna":
            raise ValueError(
                "--baseline shuffle:K makes dinucleotide shuffles of DNA; the inputs are not "
                f"one-hot DNA (N, 4, L) (shape {tuple(inputs.x.shape)})"
            )
        if method != "deeplift_shap":
            raise ValueError(
                "--baseline shuffle:K gives several references per input; use it with "
                "--method deeplift_shap"
            )
        return Baseline("shuffle", shuffles=int(k), text=t)
    try:
        return Baseline("value", value=float(t), text=t)
    except ValueError:
        pass
    path = Path(t)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise ValueError(
            f"bad --baseline {text!r}: expected zeros, a number, FILE.npy, shuffle:K or background"
        )
    if not path.is_file():
        raise FileNotFoundError(f"baseline file not found: {path}")
    arr = _load_array(path, None)
    feat = tuple(inputs.x.shape[1:])
    n_all = arr.shape[0]
    shape = tuple(arr.shape)
    if method == "deeplift_shap":
        ok = shape == feat or (arr.dim() == len(feat) + 1 and shape[1:] == feat) or (
            arr.dim() == len(feat) + 2 and shape[2:] == feat
        )
        hint = f"(R, {_dims(feat)}) shared or (N, R, {_dims(feat)}) per-input references"
    else:
        ok = shape == feat or (arr.dim() == len(feat) + 1 and shape[1:] == feat)
        hint = f"{feat}, {(1, *feat)} or (N, {_dims(feat)}) with one per input"
    if not ok:
        raise ValueError(
            f"baseline {path} has shape {shape}; for inputs of shape {tuple(inputs.x.shape)} "
            f"give {hint}"
        )
    per_input = (method == "deeplift_shap" and arr.dim() == len(feat) + 2) or (
        method != "deeplift_shap" and arr.dim() == len(feat) + 1 and n_all != 1
    )
    if per_input:
        if limit is not None:
            arr = arr[:limit]
        if arr.shape[0] != inputs.x.shape[0]:
            raise ValueError(
                f"baseline {path} has {n_all} per-input references but there are "
                f"{inputs.x.shape[0]} inputs"
            )
    return Baseline("file", array=arr, text=str(path))


def _dims(feat: tuple[int, ...]) -> str:
    return ", ".join(map(str, feat))


def batch_baseline(b: Baseline, method: str, xb: Tensor, start: int, seed: int) -> Any:
    """The ``baselines`` argument for the batch ``xb`` that starts at input ``start``."""
    feat = tuple(xb.shape[1:])
    shap = method == "deeplift_shap"
    if b.kind == "zeros":
        return xb.new_zeros((1, *feat)) if shap else None
    if b.kind == "value":
        return xb.new_full((1, *feat), b.value) if shap else b.value
    if b.kind == "background":
        ref = torch.tensor(DNA_BACKGROUND, dtype=xb.dtype).view(1, 4, 1).expand(1, *feat)
        return ref.contiguous()
    if b.kind == "shuffle":
        from neuron_importance.genomics.shuffle import dinuc_shuffle_references

        # one seed per sequence, so the references do not depend on the batch size
        return torch.cat(
            [
                dinuc_shuffle_references(xb[i : i + 1], b.shuffles, seed=seed + start + i)
                for i in range(xb.shape[0])
            ]
        )
    arr = b.array
    assert arr is not None
    if tuple(arr.shape) == feat:
        return arr.unsqueeze(0)
    if shap:
        return arr if arr.dim() == len(feat) + 1 else arr[start : start + xb.shape[0]]
    return arr if arr.shape[0] == 1 else arr[start : start + xb.shape[0]]


# ----------------------------------------------------------------------------- running


def make_explainer(method: str, model: nn.Module, rule: str | None) -> Any:
    import neuron_importance as ni

    if method == "saliency":
        return ni.Saliency(model)
    if method == "input_x_gradient":
        return ni.InputXGradient(model)
    if method == "guided_backprop":
        return ni.GuidedBackprop(model)
    if method == "integrated_gradients":
        return ni.IntegratedGradients(model)
    if method == "deeplift":
        return ni.DeepLift(model, rule=rule or "rescale")
    if method == "deeplift_shap":
        return ni.DeepLiftShap(model, rule=rule or "rescale")
    raise ValueError(f"unknown method {method!r}")  # pragma: no cover - normalised before


def attribute_batch(
    explainer: Any, method: str, xb: Tensor, target: Any, baselines: Any, n_steps: int | None
) -> tuple[Tensor, Tensor | None]:
    """Run one batch; return ``(attributions, delta or None)``."""
    if method in ("saliency", "input_x_gradient", "guided_backprop"):
        return explainer.attribute(xb, target=target), None
    kwargs: dict[str, Any] = {"baselines": baselines, "target": target}
    if method == "integrated_gradients":
        kwargs["n_steps"] = n_steps or 50
    attr, delta = explainer.attribute(xb, return_convergence_delta=True, **kwargs)
    return attr, delta


def resolve_targets(model: nn.Module, xb: Tensor, target: str) -> tuple[Any, Tensor]:
    """``(target argument, per-example indices)`` for a batch; ``pred`` = arg-max class."""
    from neuron_importance.attribution._common import (
        AttributionError,
        format_target,
        run_forward,
    )

    try:
        with torch.no_grad():
            out = run_forward(model, (xb,), ())
    except AttributionError as err:
        raise ValueError(f"model/input mismatch: {err}") from None
    per_example = out.reshape(out.shape[0], -1).shape[1] if out.dim() > 0 else 1
    if out.dim() == 0 or out.shape[0] != xb.shape[0]:
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for {xb.shape[0]} inputs; it must "
            "return one row per example"
        )
    if per_example == 1:  # one output per example: nothing to choose
        arg = None if out.dim() == 1 else 0
        return arg, torch.zeros(xb.shape[0], dtype=torch.long)
    if out.dim() != 2:
        raise ValueError(
            f"the model output has shape {tuple(out.shape)}; explain needs (N, classes)"
        )
    if target == "pred":
        idx = out.argmax(dim=1)
        return idx, idx
    idx = format_target(int(target), out)
    assert idx is not None
    return idx, idx


def _parse_target(text: str) -> str:
    t = text.strip().lower()
    if t in ("pred", "predicted", "argmax"):
        return "pred"
    try:
        value = int(t)
    except ValueError:
        raise ValueError(f"bad --target {text!r}: expected an output index or 'pred'") from None
    if value < 0:
        raise ValueError(f"bad --target {text!r}: output indices start at 0")
    return str(value)


def check_options(args: argparse.Namespace, method: str) -> None:
    if args.rule is not None and method not in _RULE_METHODS:
        raise ValueError(f"--rule applies to deeplift and deeplift_shap, not {method}")
    if args.n_steps is not None:
        if method != "integrated_gradients":
            raise ValueError(f"--n-steps applies to integrated_gradients, not {method}")
        if args.n_steps < 1:
            raise ValueError("--n-steps must be positive")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be positive")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from neuron_importance.models import is_python_model, load_model

    method = normalise_method(args.method)
    check_options(args, method)
    target = _parse_target(args.target)
    if args.weights is not None and not Path(args.weights).is_file():
        raise FileNotFoundError(f"weights file not found: {args.weights}")
    inputs = load_inputs(args.inputs, args.key, args.image_mode, args.limit)
    baseline = parse_baseline(args.baseline, method, inputs, args.limit)
    model = load_model(args.model, args.weights)
    if method in _PYTHON_ONLY and not is_python_model(model):
        raise ValueError(
            f"{method} needs a Python model (e.g. --model NAME --weights FILE): it replaces the "
            "backward pass of individual operations, which a TorchScript or exported model "
            "does not expose; saliency, input_x_gradient and integrated_gradients work on it"
        )
    x = inputs.x
    n = x.shape[0]
    resolve_targets(model, x[:1], target)  # fail fast, before the progress bar
    explainer = make_explainer(method, model, args.rule)

    attrs: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    t0 = time.perf_counter()
    with tqdm(
        total=n, desc=method, unit="ex", disable=args.quiet, file=sys.stderr, leave=False
    ) as bar:
        for start in range(0, n, args.batch_size):
            xb = x[start : start + args.batch_size]
            target_arg, idx = resolve_targets(model, xb, target)
            refs = batch_baseline(baseline, method, xb, start, args.seed)
            attr, delta = attribute_batch(explainer, method, xb, target_arg, refs, args.n_steps)
            attrs.append(attr.detach().float().cpu().numpy())
            targets.append(idx.cpu().numpy().astype(np.int64))
            if delta is not None:
                deltas.append(delta.detach().float().cpu().reshape(xb.shape[0], -1).numpy())
            bar.update(xb.shape[0])
    seconds = time.perf_counter() - t0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    attributions = np.concatenate(attrs)
    target_arr = np.concatenate(targets)
    np.save(out / "attributions.npy", attributions)
    np.save(out / "targets.npy", target_arr)
    written = ["attributions.npy", "targets.npy"]
    delta_arr = None
    if deltas:
        delta_arr = np.concatenate(deltas).reshape(n)
        np.save(out / "delta.npy", delta_arr)
        written.append("delta.npy")
    elif (out / "delta.npy").exists():  # a stale one from an earlier run would mislead
        (out / "delta.npy").unlink()
    pictures = draw_pictures(inputs, torch.from_numpy(attributions), target_arr, method, args, out)
    summary = {
        "model": args.model,
        "weights": args.weights,
        "inputs": str(args.inputs),
        "kind": inputs.kind,
        "method": method,
        "rule": (args.rule or "rescale") if method in _RULE_METHODS else None,
        "baseline": baseline.text if method in _BASELINE_METHODS else None,
        "n_steps": (args.n_steps or 50) if method == "integrated_gradients" else None,
        "target": target,
        "n_examples": n,
        "input_shape": list(x.shape),
        "seconds": round(seconds, 4),
        "ms_per_example": round(1000 * seconds / n, 4),
        "max_abs_delta": None if delta_arr is None else float(np.abs(delta_arr).max()),
        "files": written + [p.name for p in pictures],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"{method}: {n} example(s) of shape {tuple(x.shape[1:])} in {seconds:.2f} s "
        f"({1000 * seconds / n:.1f} ms/example)"
    )
    if delta_arr is not None:
        print(f"max |completeness error| (sum of attributions - output change): "
              f"{np.abs(delta_arr).max():.3g}")
    print(f"wrote {', '.join(written)}, summary.json and {len(pictures)} picture(s) to {out}")
    return 0


def draw_pictures(
    inputs: Inputs,
    attributions: Tensor,
    targets: np.ndarray,
    method: str,
    args: argparse.Namespace,
    out: Path,
) -> list[Path]:
    k = min(max(args.max_plots, 0), attributions.shape[0])
    if k == 0:
        return []
    x = inputs.x
    label = method.replace("_", " ")
    if inputs.kind == "dna":
        from neuron_importance.plots.dna import plot_contribution_logo

        paths = []
        for i in range(k):
            # per-position score (sum over the four channels) drawn on the observed base
            score = attributions[i].sum(dim=0, keepdim=True) * x[i]
            paths.append(
                plot_contribution_logo(
                    score,
                    out / f"logo_{i:03d}.png",
                    title=f"{inputs.names[i]}: {label}, target {int(targets[i])}",
                )
            )
        return paths
    if x.dim() == 4:
        from neuron_importance.plots.images import plot_image_attributions

        titles = [f"{inputs.names[i]}\ntarget {int(targets[i])}" for i in range(k)]
        return [
            plot_image_attributions(
                x[:k],
                {label: attributions[:k]},
                out / "attributions.png",
                titles=titles,
                suptitle=f"{label} ({args.model})",
            )
        ]
    if x.dim() == 2:
        from neuron_importance.plots.tabular import plot_feature_bars

        return [
            plot_feature_bars(
                attributions[:k],
                None,
                out / "features.png",
                title=f"{label} ({args.model})",
            )
        ]
    print(f"note: no picture for inputs of shape {tuple(x.shape)}", file=sys.stderr)
    return []
