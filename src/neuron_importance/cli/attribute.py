"""``neuron-importance attribute``: score a whole data set into a resumable Zarr store.

Runs in one process, or in many under ``torchrun`` (each rank takes every ``world_size``-th
chunk and writes it into the store itself). The work is done by
:func:`neuron_importance.batch.attribute_dataset`; this module only maps flags to its
arguments. Nothing heavy (zarr, the batch package) is imported until the command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

USAGE_EXAMPLES = """\
examples:
  neuron-importance attribute --model mnist_cnn --weights mnist.safetensors \\
      --data mnist_test.npy --method deeplift --target pred --out mnist-deeplift.zarr
  neuron-importance attribute --model genomics_cnn --weights g.safetensors --data seqs.fa \\
      --method deeplift_shap --rule genomics_default --baseline shuffle:10 --target 0 \\
      --out seqs-shap.zarr
  neuron-importance attribute --model mnist_cnn --data x.npy --method total_conductance \\
      --layer 3 --n-steps 32 --out tc.zarr
  torchrun --nproc-per-node 4 -m neuron_importance attribute --model mnist_cnn \\
      --data x.npy --method deeplift --out x.zarr        (same store, 4 processes)

Rerun the same command after an interruption to finish the remaining chunks.
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "attribute",
        help="attribute a whole data set into a resumable, chunked Zarr store",
        description="Score every example of a data set with one method and write the "
        "attributions (plus the completeness error, the model outputs, the targets and, for "
        "DNA with DeepLIFT, hypothetical contributions) to a chunked, compressed Zarr store "
        "with a manifest. Resumable; runs under torchrun on several processes.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="mnist_cnn, digits_cnn, genomics_cnn, mlp:IN-H1-...-OUT, or a "
                   "TorchScript / ExportedProgram (.pt2) file")
    p.add_argument("--weights", metavar="FILE",
                   help="weights for a named model: .safetensors or a .pt/.pth state dict")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help=".npy or uncompressed .npz (memory-mapped), a folder of images, or "
                   "FASTA (.fa/.fasta/.fna/.fas, one-hot encoded on the fly)")
    p.add_argument("--key", help="array name inside an .npz file (default: the first)")
    p.add_argument("--method", required=True, metavar="NAME",
                   help="saliency, input_x_gradient, guided_backprop, integrated_gradients, "
                   "deeplift, deeplift_shap, total_conductance, neuron_conductance, "
                   "layer_deeplift or layer_activation")
    p.add_argument("--out", required=True, metavar="STORE", help="the Zarr store folder")
    p.add_argument("--target", default="pred", metavar="INT|pred|FILE.npy",
                   help="output index to explain, 'pred' for each example's predicted class "
                   "(default), or a .npy of one index per example")
    p.add_argument("--baseline", metavar="zeros|NUMBER|FILE.npy|shuffle:K|background",
                   help="reference (default zeros; for deeplift_shap on DNA shuffle:10): a "
                   "constant, a .npy of one reference, one per example or (deeplift_shap) a set "
                   "(R, ...) / (N, R, ...); shuffle:K = K dinucleotide shuffles per sequence; "
                   "background = DNA background frequencies")
    m = p.add_argument_group("method options (recorded in the manifest)")
    m.add_argument("--rule", help="DeepLIFT rule: rescale, reveal_cancel or genomics_default")
    m.add_argument("--n-steps", type=int, metavar="N",
                   help="integration steps (integrated_gradients, conductance; default 50)")
    m.add_argument("--integration", metavar="RULE",
                   help="integration rule: gausslegendre, riemann_* (integrated_gradients); "
                   "trapezoid, left, gausslegendre (conductance)")
    m.add_argument("--internal-batch-size", type=int, metavar="N",
                   help="rows per internal pass (path methods, deeplift_shap pairs)")
    m.add_argument("--layer", metavar="NAME",
                   help="layer (dotted module name) for the neuron methods, e.g. 3 or features.3")
    m.add_argument("--layer-output-index", type=int, metavar="I",
                   help="for a layer returning a tuple: which tensor holds the neurons")
    m.add_argument("--neuron", action="append", metavar="I[,J,...]",
                   help="neuron_conductance: a flat index, or a comma-separated index per "
                   "dimension; repeat for several neurons (stored as (N, K, ...))")
    m.add_argument("--signed", action="store_true", help="saliency: the signed gradient")
    m.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other option of the method (VALUE read as JSON, else text), e.g. "
                   "softmax_mean_subtraction=true; repeatable")
    d = p.add_argument_group("data and run")
    d.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="examples per pass; memory is bounded by it (default 64)")
    d.add_argument("--chunk-size", type=int, metavar="C",
                   help="examples per stored chunk, a multiple of the batch size (default: "
                   "about 4 MiB of results)")
    d.add_argument("--seed", type=int, default=0, help="seed for shuffled references")
    d.add_argument("--image-mode", choices=("auto", "L", "RGB"), default="auto",
                   help="channels for a folder of images (auto: from the first image)")
    d.add_argument("--n-mode", choices=("zero", "uniform"), default="zero",
                   help="FASTA N: an all-zero column (default) or 0.25 per base")
    d.add_argument("--limit", type=int, metavar="N", help="use only the first N examples")
    d.add_argument("--hypothetical", action=argparse.BooleanOptionalAction, default=None,
                   help="store hypothetical contributions (default: on for DNA with deeplift "
                   "and deeplift_shap)")
    d.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    d.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads per process")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a store written with other settings, model or data")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _neuron(values: list[str] | None) -> Any:
    if not values:
        return None

    def one(text: str) -> Any:
        parts = [s.strip() for s in text.split(",") if s.strip()]
        try:
            ints = tuple(int(s) for s in parts)
        except ValueError:
            raise ValueError(f"bad --neuron {text!r}: expected I or I,J,... (integers)") from None
        if not ints:
            raise ValueError(f"bad --neuron {text!r}: expected I or I,J,... (integers)")
        return ints[0] if len(ints) == 1 else ints

    neurons = [one(v) for v in values]
    return neurons[0] if len(neurons) == 1 else neurons


def collect_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given by flags; the method refuses the ones it does not take."""
    options: dict[str, Any] = {}
    for item in args.option:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"bad --option {item!r}: expected KEY=VALUE")
        options[k.strip().replace("-", "_")] = _option_value(v.strip())
    flags = {
        "rule": args.rule,
        "n_steps": args.n_steps,
        "method": args.integration,
        "internal_batch_size": args.internal_batch_size,
        "layer_output_index": args.layer_output_index,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if args.signed:
        options["abs"] = False
    return options


def run(args: argparse.Namespace) -> int:
    import torch

    from neuron_importance.batch import run_attribution

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be positive")
        torch.set_num_threads(args.threads)
    result = run_attribution(
        args.model,
        args.data,
        args.method,
        args.out,
        weights=args.weights,
        target=args.target,
        baseline=args.baseline,
        options=collect_options(args),
        layer=args.layer,
        neuron=_neuron(args.neuron),
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        seed=args.seed,
        key=args.key,
        image_mode=args.image_mode,
        n_mode=args.n_mode,
        limit=args.limit,
        hypothetical=args.hypothetical,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if result.rank != 0:
        return 0
    m = result.manifest
    resumed = result.n_examples - result.computed_examples
    procs = f" on {result.world_size} processes" if result.world_size > 1 else ""
    print(
        f"{m['method']}: {result.computed_examples} example(s) in {result.seconds:.2f} s "
        f"({result.examples_per_second:.1f} examples/s){procs}"
        + (f"; {resumed} already in the store" if resumed else "")
    )
    if result.max_abs_delta is not None:
        print(f"max |completeness error| (sum of attributions - output change): "
              f"{result.max_abs_delta:.3g}")
    arrays = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in m["arrays"].items())
    print(f"wrote {arrays} to {result.path} ({result.n_chunks} chunk(s))")
    return 0
