"""``attribute_dataset``: score a whole data set into a resumable result store, on 1..N processes.

One process, or many launched by ``torchrun`` (which sets ``RANK``/``WORLD_SIZE``/
``MASTER_ADDR``/...). With several processes the default process group is initialised here
(``gloo`` on CPU, ``nccl`` on CUDA) unless the caller already did; work chunk ``i`` belongs to
rank ``i % world_size``, and every rank writes its own chunks straight into the store. There
is no scheduler: the assignment is a fixed function of the chunk index, so a rerun (with any
number of processes) finds the unfinished chunks by their markers and computes only those.

**Determinism.** A chunk's bytes depend only on its examples: batches never straddle chunks
(the chunk size is a multiple of the batch size), the model runs in eval mode, and shuffled
references for example ``j`` are drawn from a generator seeded with ``(seed, j)``, never from
a shared random stream. So a 2-process run writes exactly the bytes of a 1-process run, and a
resumed run those of an uninterrupted one. (On CPU, results were also found not to depend on
the number of intra-op threads; on CUDA cuDNN is put in deterministic mode, but GPU kernels
give no bitwise guarantee across devices or library versions.)

**Collectives.** Ranks proceed in rounds of ``world_size`` chunks; after each round one
``all_reduce`` sums the examples finished, which rank 0 shows in a tqdm bar (examples/s and
ETA). Every rank makes the same calls the same number of times, finished chunks or not, so
nothing can deadlock; a rank that fails makes ``torchrun`` stop the others.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import neuron_importance

from ..attribution._common import CompletenessWarning
from .hashing import model_hash
from .methods import (
    SPECS,
    BatchAttributor,
    check_targets,
    normalise,
    parse_references,
    parse_targets,
    resolve_options,
)
from .sources import Source, open_source
from .store import FORMAT, ResultStore, check_writable, prepare_store

__all__ = ["RunResult", "attribute_dataset", "run_attribution"]

#: default chunk: about this many bytes of float32 results per chunk (rounded to batches)
TARGET_CHUNK_BYTES = 4 * 2**20


@dataclass
class RunResult:
    """What a run did: the store (a read-only ``zarr.Group``) and figures for a summary."""

    store: Any
    path: Path
    n_examples: int
    n_chunks: int
    computed_examples: int  # by all ranks in this run (the rest were already finished)
    seconds: float
    max_abs_delta: float | None
    rank: int = 0
    world_size: int = 1
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def examples_per_second(self) -> float:
        return self.computed_examples / self.seconds if self.seconds > 0 else float("nan")


# ----------------------------------------------------------------------------- processes


class _Processes:
    """This process's rank in the torchrun job (or a job of one)."""

    def __init__(self, device: str | torch.device | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = _pick_device(device, local_rank)
        self.rank = 0
        self.owned = False
        self._td: Any = None
        if self.world > 1:
            import torch.distributed as td

            self._td = td
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            if not td.is_initialized():
                td.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
                self.owned = True
            self.rank = td.get_rank()
            self.world = td.get_world_size()

    def total(self, value: int) -> int:
        """Sum of ``value`` over the ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        self._td.all_reduce(t)
        return int(t.item())

    def from_rank0(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (also a barrier behind rank 0's work)."""
        if self.world == 1:
            return obj
        box = [obj]
        self._td.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def close(self) -> None:
        if self.owned:
            self._td.destroy_process_group()
            self.owned = False

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


# ----------------------------------------------------------------------------- plan


@dataclass
class _Plan:
    method: str
    source: Source
    attributor: BatchAttributor
    references: Any
    targets: Any
    manifest: dict[str, Any]
    arrays: dict[str, tuple[tuple[int, ...], str]]
    batch_size: int
    seed: int
    dtype: torch.dtype


def _plan(
    processes: _Processes,
    model: nn.Module | str,
    data: Any,
    method: str,
    *,
    weights: str | os.PathLike | None,
    target: Any,
    baseline: Any,
    options: Mapping[str, Any] | None,
    layer: Any,
    neuron: Any,
    batch_size: int,
    chunk_size: int | None,
    seed: int,
    key: str | None,
    image_mode: str,
    n_mode: str,
    limit: int | None,
    hypothetical: bool | None,
    data_hash: str | None,
) -> _Plan:
    """Validate everything and probe the method on one example; compute nothing else."""
    from ..models import is_python_model, load_model
    from ..neurons._layers import resolve_layer

    method = normalise(method)
    spec = SPECS[method]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
    if chunk_size is not None and (chunk_size < 1 or chunk_size % batch_size):
        raise ValueError(
            f"chunk size {chunk_size} must be a positive multiple of the batch size {batch_size}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")

    source = open_source(data, key=key, image_mode=image_mode, n_mode=n_mode, limit=limit,
                         data_hash=data_hash)
    net = load_model(model, weights).to(processes.device)
    if spec.python_only and not is_python_model(net):
        raise ValueError(
            f"{method} needs a Python model (e.g. --model NAME --weights FILE): it replaces the "
            "backward pass of individual operations, which a TorchScript or exported model "
            "does not expose"
        )
    opts = dict(options or {})
    if layer is not None:
        if "layer" not in spec.ctor:
            raise ValueError(f"--layer applies to the neuron methods, not {method}")
        opts["layer"] = layer if isinstance(layer, str) else resolve_layer(net, layer)[0]
    if neuron is not None:
        if method != "neuron_conductance":
            raise ValueError(f"--neuron applies to neuron_conductance, not {method}")
        opts["neuron_selector"] = neuron
    opts = resolve_options(method, opts)

    if hypothetical is None:
        hypothetical = source.kind == "dna" and method in ("deeplift", "deeplift_shap")
    elif hypothetical and source.kind != "dna":
        raise ValueError(
            "hypothetical contributions need one-hot DNA inputs (N, 4, L); the data has "
            f"examples of shape {source.example_shape}"
        )
    n = source.n
    refs = parse_references(baseline, method, source.kind, n, source.example_shape)
    targets = parse_targets(target, method, n)
    attributor = BatchAttributor(net, method, opts, bool(hypothetical))
    param = next((p for p in net.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float32

    # Probe: one example through the model and the method, for the shapes (and every error
    # about the model, the targets or the options) before any real work.
    x0 = source.read(0, 1).to(processes.device, dtype)
    out0 = attributor.outputs(x0)
    targets = check_targets(targets, out0, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompletenessWarning)
        probe = attributor(x0, targets.for_batch(out0, 0), refs.for_batch(
            x0, 0, seed, spec.references == "set"))

    arrays: dict[str, tuple[tuple[int, ...], str]] = {
        "attributions": ((n, *probe["attributions"].shape[1:]), "float32")
    }
    if "delta" in probe:
        arrays["delta"] = ((n,), "float32")
    arrays["predictions"] = ((n, *out0.shape[1:]), "float32")
    if targets.mode != "none":
        arrays["targets"] = ((n,), "int64")
    if "hypothetical" in probe:
        arrays["hypothetical"] = ((n, *probe["hypothetical"].shape[1:]), "float32")
    if chunk_size is None:
        per_example = sum(
            4 * int(np.prod(shape[1:], dtype=np.int64)) for shape, _ in arrays.values()
        )
        batches = max(1, TARGET_CHUNK_BYTES // max(1, per_example * batch_size))
        chunk_size = batch_size * min(batches, -(-n // batch_size))

    info = dict(source.info)
    data_path = info.pop("path", None)
    info.pop("source", None)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "library_version": neuron_importance.__version__,
        "method": method,
        "level": spec.level,
        "options": opts,
        "hypothetical": bool(hypothetical),
        "baseline": {
            "kind": refs.kind,
            "text": refs.text if refs.kind not in ("shared", "per_input") else refs.kind,
            "hash": refs.fingerprint,
        },
        "target": {
            "mode": targets.mode,
            "index": targets.index if targets.mode == "index" else None,
            "hash": targets.fingerprint,
        },
        "seed": seed if refs.kind == "shuffle" else None,
        "model": {"hash": model_hash(net)},
        "data": {
            "source": source.info.get("source"),
            "hash": source.fingerprint,
            "n_examples": n,
            "example_shape": list(source.example_shape),
            "kind": source.kind,
            **info,
        },
        "arrays": {name: {"shape": list(s), "dtype": d} for name, (s, d) in arrays.items()},
        "batch_size": batch_size,
        "chunk_size": int(chunk_size),
        "n_chunks": -(-n // int(chunk_size)),
        "provenance": {
            "model_spec": model if isinstance(model, str) else type(model).__name__,
            "weights": None if weights is None else str(Path(weights).resolve()),
            "data": data_path,
            "baseline_file": refs.text if refs.kind in ("shared", "per_input") else None,
            "target_file": targets.text if targets.mode == "file" else None,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    return _Plan(method, source, attributor, refs, targets, manifest, arrays, batch_size, seed,
                 dtype)


# ----------------------------------------------------------------------------- running


def run_attribution(
    model: nn.Module | str,
    data: Any,
    method: str,
    out: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    target: Any = "pred",
    baseline: Any = None,
    options: Mapping[str, Any] | None = None,
    layer: Any = None,
    neuron: Any = None,
    batch_size: int = 64,
    chunk_size: int | None = None,
    seed: int = 0,
    key: str | None = None,
    image_mode: str = "auto",
    n_mode: str = "zero",
    limit: int | None = None,
    hypothetical: bool | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
    data_hash: str | None = None,
) -> RunResult:
    """:func:`attribute_dataset`, returning a :class:`RunResult` with timing figures."""
    out = Path(out)
    processes = _Processes(device)
    try:
        if processes.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        if processes.rank == 0:
            check_writable(out)  # before loading anything: the cheapest check first
        plan = _plan(
            processes, model, data, method, weights=weights, target=target, baseline=baseline,
            options=options, layer=layer, neuron=neuron, batch_size=batch_size,
            chunk_size=chunk_size, seed=seed, key=key, image_mode=image_mode, n_mode=n_mode,
            limit=limit, hypothetical=hypothetical, data_hash=data_hash,
        )
        error = None
        if processes.rank == 0:
            try:
                prepare_store(out, plan.manifest, plan.arrays, overwrite=overwrite)
            except (ValueError, OSError) as err:
                error = err
        error = processes.from_rank0(error)
        if error is not None:
            raise error
        return _execute(processes, plan, out, progress)
    finally:
        processes.close()


def _execute(processes: _Processes, plan: _Plan, out: Path, progress: bool) -> RunResult:
    import zarr
    from tqdm.auto import tqdm

    store = ResultStore(out)
    rank, world = processes.rank, processes.world
    mine = range(rank, store.n_chunks, world)
    todo = {i for i in mine if not store.is_done(i)}
    remaining = processes.total(sum(store.bounds(i)[1] - store.bounds(i)[0] for i in todo))
    set_method = SPECS[plan.method].references == "set"
    computed = 0
    t0 = time.perf_counter()
    with tqdm(
        total=store.n,
        initial=store.n - remaining,
        desc=f"{plan.method} ({world} proc)" if world > 1 else plan.method,
        unit="ex",
        disable=not progress or rank != 0,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    ) as bar, warnings.catch_warnings():
        # the completeness error of every example is stored; one warning per batch would
        # only bury the progress bar
        warnings.simplefilter("ignore", CompletenessWarning)
        for first in range(0, store.n_chunks, world):
            i = first + rank
            done_now = 0
            if i in todo:
                store.write_chunk(i, _compute_chunk(plan, store, i, processes.device, set_method))
                done_now = store.bounds(i)[1] - store.bounds(i)[0]
            step = processes.total(done_now)
            computed += step
            bar.update(step)
    seconds = time.perf_counter() - t0
    processes.from_rank0(None)  # every rank has written its chunks
    max_delta = None
    if rank == 0 and "delta" in store.names:
        max_delta = 0.0
        for i in range(store.n_chunks):
            s, e = store.bounds(i)
            block = np.abs(store.arrays["delta"][s:e])
            max_delta = max(max_delta, float(np.nanmax(block)) if block.size else 0.0)
    return RunResult(
        store=zarr.open_group(out, mode="r"),
        path=out,
        n_examples=store.n,
        n_chunks=store.n_chunks,
        computed_examples=computed,
        seconds=seconds,
        max_abs_delta=max_delta,
        rank=rank,
        world_size=world,
        manifest=store.manifest,
    )


def _compute_chunk(
    plan: _Plan, store: ResultStore, i: int, device: torch.device, set_method: bool
) -> dict[str, np.ndarray]:
    start, stop = store.bounds(i)
    buffers = {
        name: np.empty((stop - start, *store.arrays[name].shape[1:]), dtype=store.arrays[name].dtype)
        for name in store.names
    }
    for s in range(start, stop, plan.batch_size):
        e = min(stop, s + plan.batch_size)
        x = plan.source.read(s, e).to(device, plan.dtype)
        out = plan.attributor.outputs(x)
        target = plan.targets.for_batch(out, s)
        refs = plan.references.for_batch(x, s, plan.seed, set_method)
        result = plan.attributor(x, target, refs)
        rows = slice(s - start, e - start)
        for name, value in result.items():
            buffers[name][rows] = value
        buffers["predictions"][rows] = out.to("cpu", torch.float32).numpy()
        if "targets" in buffers:
            buffers["targets"][rows] = target.cpu().numpy()
    return buffers


def attribute_dataset(
    model: nn.Module | str,
    data: Any,
    method: str,
    out: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    target: Any = "pred",
    baseline: Any = None,
    options: Mapping[str, Any] | None = None,
    layer: Any = None,
    neuron: Any = None,
    batch_size: int = 64,
    chunk_size: int | None = None,
    seed: int = 0,
    key: str | None = None,
    image_mode: str = "auto",
    n_mode: str = "zero",
    limit: int | None = None,
    hypothetical: bool | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
    data_hash: str | None = None,
) -> Any:
    """Attribute every example of a data set into a resumable Zarr store; return the store.

    The Python form of ``neuron-importance attribute``. Run it in one process, or in each
    process of a ``torchrun`` job (every rank calls it with the same arguments; the ranks
    share the chunks and the result is byte-identical to a one-process run). Rerunning it
    after an interruption computes only the unfinished chunks.

    Args:
        model: a model name (``mnist_cnn``, ``genomics_cnn``, ``mlp:IN-...-OUT``), the path of a
            TorchScript/ExportedProgram file, or an ``nn.Module`` (put in eval mode).
        data: a ``.npy``/``.npz`` file (memory-mapped), a folder of images, a FASTA file, a
            map-style ``Dataset``, or an array/tensor. See :mod:`neuron_importance.batch.sources`.
        method: ``saliency``, ``input_x_gradient``, ``guided_backprop``,
            ``integrated_gradients``, ``deeplift``, ``deeplift_shap``, ``total_conductance``,
            ``neuron_conductance``, ``layer_deeplift`` or ``layer_activation``.
        out: the store folder (created; an existing store of the same run is resumed).
        weights: a ``.safetensors`` or ``.pt`` state dict for a named model.
        target: an output index, ``"pred"`` (each example's arg-max class), the path of a
            ``.npy`` with one index per example, or ``None`` for single-output models.
        baseline: the reference, as ``--baseline`` of ``explain``: ``None`` (zeros; 10
            dinucleotide shuffles for ``deeplift_shap`` on DNA), a number, ``"zeros"``,
            ``"background"`` (DNA), ``"shuffle:K"`` (``deeplift_shap`` on DNA) or a ``.npy``
            path (shared, or one per example, memory-mapped).
        options: the method's own options (constructor and ``attribute`` keywords, e.g.
            ``{"rule": "reveal_cancel"}``, ``{"n_steps": 32, "method": "riemann_trapezoid"}``,
            ``{"abs": False}``); unknown keys are refused. All are recorded in the manifest.
        layer: dotted name (or module) of the layer for the neuron methods.
        neuron: the neuron(s) for ``neuron_conductance``: a flat index, a tuple index, or a
            list of those.
        batch_size: examples per forward/backward pass; memory is bounded by it.
        chunk_size: examples per stored chunk, a multiple of ``batch_size`` (default: about
            4 MiB of results per chunk).
        seed: seed of the shuffled references (example ``j`` uses ``(seed, j)``).
        key: the array inside an ``.npz`` (default: the first).
        image_mode: ``auto``, ``L`` or ``RGB`` for a folder of images.
        n_mode: ``zero`` (all-zero column, default) or ``uniform`` (0.25 each) for ``N`` in
            FASTA.
        limit: use only the first ``limit`` examples.
        hypothetical: store hypothetical contributions (default: for DNA with ``deeplift``
            and ``deeplift_shap``).
        device: ``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` under torchrun) or ``None`` (CUDA if
            available).
        overwrite: replace an existing store that was written with other settings.
        progress: show a progress bar (rank 0) with examples/s and ETA.
        data_hash: your identifier of the data (for a ``Dataset``, which is otherwise
            fingerprinted by its length and 64 sampled items).

    Returns:
        the store as a read-only ``zarr.Group`` (arrays ``attributions``, ``predictions``,
        and where they apply ``delta``, ``targets``, ``hypothetical``; the manifest in
        ``store.attrs["neuron_importance"]``).

    Raises:
        ValueError: bad options, data, targets or baselines, an unwritable ``out``, or a store
            written by another run (:class:`~neuron_importance.batch.store.StoreMismatchError`)
            — all before any attribution is computed.
    """
    return run_attribution(
        model, data, method, out, weights=weights, target=target, baseline=baseline,
        options=options, layer=layer, neuron=neuron, batch_size=batch_size,
        chunk_size=chunk_size, seed=seed, key=key, image_mode=image_mode, n_mode=n_mode,
        limit=limit, hypothetical=hypothetical, device=device, overwrite=overwrite,
        progress=progress, data_hash=data_hash,
    ).store
