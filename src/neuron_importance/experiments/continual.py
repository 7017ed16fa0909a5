"""The task-order robustness study of continual learning with neuron activation importance.

Protocol (``docs/continual.md``; notes ``../shared/docs/methods/continual-learning.md`` §3–§5):

1. **Tuning.** For every benchmark, every method with a hyperparameter grid is run on order 0
   (the identity order; with ``tune_orders=K`` on the first K orders, e.g. identity and
   reverse) for each grid point; the point with the best final average *validation* accuracy
   (mean over those orders and the training seeds; or, with ``selection="one-se"``, the
   strongest penalty within one standard error of it) is frozen for all orders (the test split
   chooses nothing).
2. **Main runs.** Every method, with its frozen hyperparameters, on the same K task orders:
   the identity, the reverse and K−2 seeded permutations.
3. **NAI ablation.** One switch of :class:`~neuron_importance.continual.NAIOptions` changed at a
   time from the defaults, with NAI's tuned λ, on the ablation benchmark's orders.

Every finished run is appended as one JSON line to ``runs.jsonl`` in the output folder and each
run checkpoints after every task (``checkpoints/``), so rerunning the same command after an
interruption (SIGKILL included) skips finished runs and resumes the unfinished ones after their
last finished task. With ``jobs > 1`` independent runs of a phase go to worker processes (one
torch thread each); only the parent writes ``runs.jsonl``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuron_importance.experiments.machine import machine_info

if TYPE_CHECKING:  # the study module loads torch only in the runs themselves
    from neuron_importance.continual import TrainConfig

__all__ = ["SELECTIONS", "StudySettings", "headline", "reproduce", "run_study", "select_point",
           "task_orders"]

GOALS = {"split-mnist": 99.7, "permuted-mnist": 95.0}

#: grids of the strength hyperparameter, per method (UCL's MLP grids widened to log grids)
FULL_GRIDS: dict[str, dict[str, list[Any]]] = {
    "l2": {"lam": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
    "ewc": {"lam": [1e1, 1e2, 1e3, 1e4, 1e5]},
    "online-ewc": {"lam": [1e1, 1e2, 1e3, 1e4, 1e5]},
    "si": {"c": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "mas": {"lam": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "nai": {"lam": [0.01, 0.1, 1.0, 10.0, 100.0]},
    "nai-tc": {"lam": [0.01, 0.1, 1.0, 10.0, 100.0]},
}

#: NAI ablation: one switch at a time away from the defaults
ABLATION: list[dict[str, Any]] = [
    {"map": "max", "input_importance": "none", "stat": "mean"},  # the notes' default
    {"input_importance": "none"},
    {"map": "max"}, {"map": "mean"}, {"map": "min"}, {"map": "out"},
    {"stat": "mean"}, {"stat": "abs"}, {"stat": "nonzero"}, {"stat": "pre"},
    {"norm": "none"}, {"norm": "max"}, {"norm": "zscore"}, {"norm": "rank"},
    {"acc": "max"}, {"acc": "sum"},
    {"penalty": "group"},
    {"source": "conductance", "n_samples": 2000},
    {"collect_mode": "train"},
    {"reinit": 0.1},
    {"downstream": "weights"},
    {"stat": "var"},
    {"floor": 0.0},
]

#: NAI switches added after runs were recorded, with the value that leaves NAI as it was: a
#: run at that value keeps its key (so finished runs stay valid), any other value changes it
_NAI_KEY_NEUTRAL: dict[str, Any] = {"downstream": "none", "conductance_stat": "abs",
                                     "conductance_target": "logit", "floor": 0.0,
                                     "head_scale": 1.0, "conductance_weight": "uniform",
                                     "conv_units": "channel", "input_side": "importance",
                                     "anchor": "last", "joint_positions": "mean",
                                     "task_weight": "none", "task_weight_power": 1.0}

#: the same for the baselines' secondary hyperparameters: written out at its default (SI's
#: damping ξ = 0.1, to tune it with c) a run keeps the key of the run that left it implicit
_BASELINE_KEY_NEUTRAL: dict[str, dict[str, Any]] = {"si": {"xi": 0.1}}

_NO_VALUE = object()


def _key_neutral(method: str) -> Mapping[str, Any]:
    """The hyperparameter values ``method``'s run keys leave out (see the two tables above)."""
    return _NAI_KEY_NEUTRAL if method in NAI_METHODS else _BASELINE_KEY_NEUTRAL.get(method, {})


def _moved_nai_defaults(method: str) -> dict[str, Any]:
    """``method``'s NAI switches whose default is no longer their key-neutral value (nai-tc's
    centred target since session 10, ``floor = 0.003`` since session 14).

    A study writes them out in every run's hyperparameters, so a record names what it ran
    with; a record that lacks one predates the switch or its move and ran at the neutral
    value (:meth:`RunSpec.from_record`)."""
    from neuron_importance.continual import NAI_TC_OPTIONS, make_strategy

    options = asdict(make_strategy(method, {"lam": 1.0}).options)
    fixed = NAI_TC_OPTIONS if method == "nai-tc" else {}  # part of the method, not a default
    return {k: options[k] for k, v in _NAI_KEY_NEUTRAL.items()
            if options[k] != v and k not in fixed}


#: NAI switches that only act with ``source="conductance"``
_CONDUCTANCE_ONLY = {"conductance_stat", "conductance_target", "conductance_steps",
                     "conductance_weight"}

#: how the frozen grid point is chosen from order 0's validation ACC (``StudySettings.selection``)
SELECTIONS = ("best", "one-se")

ALL_METHODS = ("finetune", "joint", "l2", "ewc", "online-ewc", "si", "mas", "nai", "nai-tc")

#: the NAI variants of the study: ``nai`` (activation statistics) and ``nai-tc`` (Total
#: Conductance); both get the goal checks, ``nai_options`` applies to both and
#: ``method_nai_options`` to one of them
NAI_METHODS = ("nai", "nai-tc")


@dataclass
class StudySettings:
    """What the study runs. ``full()`` and ``quick_mode()`` give the two presets."""

    benchmarks: list[str]
    methods: list[str]
    n_orders: int
    epochs: dict[str, int]
    grids: dict[str, dict[str, list[Any]]]
    nai_options: dict[str, Any] = field(default_factory=dict)
    #: NAIOptions switches for one NAI variant only (``{"nai": {"norm": "max"}}``), over
    #: ``nai_options``: a study can run each variant with the options tuned for it
    method_nai_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    ablation: list[dict[str, Any]] = field(default_factory=list)
    ablation_benchmarks: list[str] = field(default_factory=list)
    ablation_orders: int = 3
    limit: int | None = None
    permuted_tasks: int | None = None
    hidden: tuple[int, ...] = (400, 400)
    #: output channels of 5×5 conv + 2×2 max-pool blocks in front of ``hidden``, every method
    #: alike (a LeNet-style trunk, :class:`~neuron_importance.continual.ContinualCNN`);
    #: empty = the MLP
    conv: tuple[int, ...] = ()
    batch_size: int = 256
    patience: int = 2
    scenario: str = "task"
    class_il_methods: list[str] = field(default_factory=list)
    seed: int = 0
    jobs: int = 1
    max_extensions: int = 2
    #: training seeds per task order (seed, seed + 1, ...): tuning averages the validation ACC
    #: over them, and each order's ACC is their mean, so the std across orders measures the
    #: order and not the training noise (notes §4: every order with 3 seeds); ablation and
    #: class-IL runs use the first seed only
    seeds: int = 1
    #: dropout after each hidden activation, every method alike (UCL / HAT MLPs: 0.5)
    dropout: float = 0.0
    #: epochs that train each new task's head alone, the trunk frozen, before the task's full
    #: training (every method alike; task heads only: not Permuted MNIST, not class-IL runs)
    head_warmup: int = 0
    #: how tuning picks the frozen point (not part of a run's key: it only picks among runs):
    #: ``best``, the highest validation ACC on order 0; ``one-se``, the strongest penalty
    #: whose validation ACC is within one standard error (over the seeds) of the highest
    #: (:func:`select_point`; needs ``seeds`` >= 2)
    selection: str = "best"
    #: how many of the study's orders tuning runs every grid point on (the first K: order 0
    #: the identity, order 1 the reverse, ...), the validation ACC averaged over them; not part
    #: of a run's key (it only decides which runs tuning reads). Order 0 alone cannot see what
    #: a weak penalty costs when a hard task is learned early; the reverse order can
    tune_orders: int = 1
    #: where runs train ("cpu", "cuda", "cuda:1", ...); not part of a run's key (the protocol
    #: is the same), but each record names the device it ran on
    device: str = "cpu"

    @classmethod
    def full(cls, seed: int = 0) -> StudySettings:
        return cls(
            benchmarks=["split-mnist", "split-fashion-mnist", "permuted-mnist"],
            methods=list(ALL_METHODS), n_orders=5,
            epochs={"split-mnist": 6, "split-fashion-mnist": 6, "permuted-mnist": 3},
            grids={k: dict(v) for k, v in FULL_GRIDS.items()},
            ablation=[dict(a) for a in ABLATION], ablation_benchmarks=["split-mnist"],
            ablation_orders=2, class_il_methods=["finetune", "ewc", "si", "mas", "nai"],
            seed=seed,
        )

    @classmethod
    def quick_mode(cls, seed: int = 0) -> StudySettings:
        return cls(
            benchmarks=["split-mnist", "split-fashion-mnist", "permuted-mnist"],
            methods=list(ALL_METHODS), n_orders=2,
            epochs={"split-mnist": 3, "split-fashion-mnist": 3, "permuted-mnist": 3},
            grids={k: {p: vals[1:4:2] for p, vals in v.items()} for k, v in FULL_GRIDS.items()},
            ablation=[{"norm": "zscore"}, {"map": "out"}], ablation_benchmarks=["split-mnist"],
            ablation_orders=1, limit=5000, permuted_tasks=3, hidden=(64, 64),
            class_il_methods=["finetune", "nai"], seed=seed,
        )

    def train_config(self, epochs: int, seed: int, scenario: str = "task") -> TrainConfig:
        """The :class:`~neuron_importance.continual.TrainConfig` of one run of this study: the
        protocol every method shares, with the run's epochs, training seed and scenario."""
        from ..continual import TrainConfig

        return TrainConfig(epochs=epochs, batch_size=self.batch_size, hidden=tuple(self.hidden),
                           patience=self.patience, scenario=scenario, seed=seed,
                           dropout=self.dropout, head_warmup=self.head_warmup,
                           conv=tuple(self.conv))

    def nai_options_for(self, method: str) -> dict[str, Any]:
        """The NAIOptions switches the study sets for ``method`` (``nai`` or ``nai-tc``)."""
        return {**self.nai_options, **self.method_nai_options.get(method, {})}

    def hyperparameters_for(self, method: str, point: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters a run of ``method`` at grid point ``point`` is keyed and run with."""
        if method in NAI_METHODS:
            # the defaults that moved off their neutral value are written out, so a run names
            # its conductance target and floor
            return {**_moved_nai_defaults(method), **self.nai_options_for(method), **point}
        return dict(point)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> StudySettings:
        """The settings a study wrote to results.json (``settings``), read back; keys that are
        not fields (``nai_defaults``, ...) and fields added since (their defaults) are fine."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k in ("hidden", "conv") else v
                      for k, v in saved.items() if k in names})

    def check(self) -> None:
        from neuron_importance.continual import (
            BENCHMARKS,
            METHODS,
            SHARED_HEAD_BENCHMARKS,
            NAIOptions,
            TrainConfig,
            make_strategy,
        )

        for m in self.method_nai_options:
            if m not in NAI_METHODS:
                raise ValueError(f"NAI options were given for method {m!r}; only "
                                 f"{' and '.join(NAI_METHODS)} take them")

        for b in self.benchmarks + self.ablation_benchmarks:
            if b not in BENCHMARKS:
                raise ValueError(f"unknown benchmark {b!r}; choose from {', '.join(BENCHMARKS)}")
        for m in self.methods + self.class_il_methods:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        for b in self.benchmarks:
            if b not in self.epochs:
                raise ValueError(f"no epoch count given for {b}")
        if self.n_orders < 1 or self.ablation_orders < 1:
            raise ValueError("the number of task orders must be at least 1")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds (training seeds per order) must be a positive int, "
                             f"got {self.seeds!r}")
        # every grid point and ablation variant is checked before any training
        for m, grid in self.grids.items():
            for point in _grid_points(grid):
                make_strategy(m, self.hyperparameters_for(m, point))
        for variant in self.ablation:
            NAIOptions(**{**self.nai_options_for("nai"), **variant})
        if self.jobs < 1:
            raise ValueError(f"jobs must be positive, got {self.jobs}")
        if (isinstance(self.tune_orders, bool) or not isinstance(self.tune_orders, int)
                or not 1 <= self.tune_orders <= self.n_orders):
            raise ValueError(f"tune_orders must be an int from 1 to the number of orders "
                             f"({self.n_orders}), got {self.tune_orders!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; choose from "
                             f"{', '.join(SELECTIONS)}")
        if self.selection == "one-se" and self.seeds < 2:
            raise ValueError("selection one-se needs the standard error of the validation ACC "
                             f"over training seeds: set seeds >= 2 (got {self.seeds})")
        # the training protocol's own checks, as the grid points get make_strategy's
        TrainConfig(dropout=self.dropout, head_warmup=self.head_warmup,
                    conv=tuple(self.conv))
        w = self.head_warmup
        shared = [b for b in self.benchmarks if b in SHARED_HEAD_BENCHMARKS]
        if w and shared:
            raise ValueError(f"head_warmup needs one head per task; {', '.join(shared)} has "
                             "one shared head (leave it out of --benchmarks)")
        if w and self.class_il_methods:
            raise ValueError("head_warmup needs one head per task; the class-incremental runs "
                             "train one shared head (add --no-class-il)")
        check_device(self.device)


def check_device(device: str) -> None:
    """Refuse a device torch cannot parse or this machine does not have, before training."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({e})") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise ValueError(f"device {device!r}: the study runs on 'cpu' or 'cuda[:N]'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch {torch.__version__} sees no "
                         "CUDA GPU on this machine")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA GPU(s)")


def _device_name(device: Any) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def task_orders(n_tasks: int, k: int, seed: int = 0) -> list[list[int]]:
    """``k`` distinct orders: identity, reverse, then seeded random permutations."""
    rng = np.random.default_rng(seed + 12345)
    orders = [list(range(n_tasks))]
    if k > 1:
        orders.append(list(reversed(range(n_tasks))))
    seen = {tuple(o) for o in orders}
    while len(orders) < k:
        perm = [int(v) for v in rng.permutation(n_tasks)]
        if tuple(perm) not in seen:
            seen.add(tuple(perm))
            orders.append(perm)
    return orders


def select_point(method: str, entries: Sequence[Mapping[str, Any]], rule: str = "best"
                 ) -> Mapping[str, Any]:
    """The tuning-table entry (``_tuning_table``) a study freezes for ``method``.

    ``best``: the highest mean validation ACC. ``one-se``: the one-standard-error rule
    (Breiman et al. 1984, *CART* §3.4.3; Hastie, Tibshirani & Friedman, *ESL* §7.10): of the
    points whose mean validation ACC is at least ``best − SE``, SE = s/√n the standard error
    of the best point's mean over its n runs (its training seeds, times its tuning orders
    when ``tune_orders`` > 1; s with ddof 1), the one with the
    strongest penalty (largest λ, or c for SI; ties by validation ACC). Order 0's validation
    ACC cannot see what a weak penalty costs on orders that learn a hard task early, so
    among points the validation cannot tell apart the rule takes the more stable one.
    """
    if not entries:
        raise ValueError(f"no tuning runs for {method}")
    best = max(entries, key=lambda e: e["val_acc"])
    if rule == "best":
        return best
    if rule != "one-se":
        raise ValueError(f"unknown selection {rule!r}; choose from {', '.join(SELECTIONS)}")
    vals = best.get("val_accs") or []
    if len(vals) < 2:
        raise ValueError(f"selection one-se needs several training seeds per grid point; "
                         f"{method}'s best point has {len(vals) or 1}")
    from neuron_importance.continual import METHODS  # method -> its strength hyperparameter

    se = float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    key = METHODS.get(method)
    near = [e for e in entries if e["val_acc"] >= best["val_acc"] - se]
    return max(near, key=lambda e: (float(e["hyperparameters"].get(key, -math.inf)),
                                    e["val_acc"]))


def _edge_extension(grid: Mapping[str, list[Any]], recs: Sequence[Mapping[str, Any]],
                    method: str = "", rule: str = "best") -> dict[str, list[Any]] | None:
    """A one-parameter grid whose chosen point (:func:`select_point` under ``rule``) is at an
    edge, extended one step.

    Geometric grids step by the ratio of their two outermost points on that side; other
    grids (or several parameters, or an edge point that is 0) are not extended.
    """
    if len(grid) != 1 or not recs:
        return None
    (key, values), = grid.items()
    pts = sorted(float(v) for v in values)
    if len(pts) < 2 or pts[0] <= 0:
        return None
    best = select_point(method, recs, rule)["hyperparameters"].get(key)
    if best is None:
        return None
    if float(best) == pts[0]:
        extra = pts[0] * pts[0] / pts[1]
    elif float(best) == pts[-1]:
        extra = pts[-1] * pts[-1] / pts[-2]
    else:
        return None
    return {key: sorted(pts + [float(f"{extra:.6g}")])}


def _tuning_orders_text(k: int) -> str:
    return "order 0" if k == 1 else f"orders 0-{k - 1}"


def _tuning_table(specs: Sequence[RunSpec], recs: Sequence[Mapping[str, Any]],
                  benchmarks: Sequence[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per benchmark and method, one entry per grid point: ACCs averaged over the seeds (and,
    with several tuning orders, over the orders: ``orders`` lists each run's order).

    A point is the hyperparameters its runs were asked for (``specs[i]`` gave ``recs[i]``),
    not those a record carries: a reused run recorded before a switch existed (no ``floor``)
    is the same grid point as the new seeds that write it out (``floor = 0``).
    """
    points: dict[tuple[str, str, tuple[tuple[str, Any], ...]], list[Mapping[str, Any]]] = {}
    for s, r in zip(specs, recs, strict=True):
        points.setdefault((s.benchmark, s.method, s.hyperparameters), []).append(r)
    table: dict[str, dict[str, list[dict[str, Any]]]] = {b: {} for b in benchmarks}
    for (b, m, hp), rs in points.items():
        entry: dict[str, Any] = {"hyperparameters": dict(hp),
                                 "val_acc": float(np.mean([r["val_acc"] for r in rs])),
                                 "test_acc": float(np.mean([r["acc"] for r in rs]))}
        if len(rs) > 1:
            entry["seeds"] = [r["seed"] for r in rs]
            entry["val_accs"] = [r["val_acc"] for r in rs]
        if len({tuple(r["order"]) for r in rs}) > 1:
            entry["orders"] = [list(r["order"]) for r in rs]
        table[b].setdefault(m, []).append(entry)
    return table


def _grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


# ---------------------------------------------------------------------------- run records


@dataclass(frozen=True)
class RunSpec:
    phase: str
    benchmark: str
    method: str
    order: tuple[int, ...]
    hyperparameters: tuple[tuple[str, Any], ...]
    epochs: int
    scenario: str
    variant: str = ""
    seed: int = 0

    @classmethod
    def from_record(cls, record: Mapping[str, Any], settings: StudySettings) -> RunSpec:
        """The spec of a recorded run (a line of runs.jsonl), under ``settings``; an NAI switch
        the record does not name ran at its key-neutral value (the record predates it)."""
        hp = dict(record["hyperparameters"])
        if record["method"] in NAI_METHODS:
            moved = _moved_nai_defaults(record["method"])
            hp.update({k: _NAI_KEY_NEUTRAL[k] for k in moved if k not in hp})
        return cls(record["phase"], record["benchmark"], record["method"],
                   tuple(record["order"]), tuple(sorted(hp.items())),
                   settings.epochs[record["benchmark"]], record["scenario"], record["variant"],
                   record.get("seed", 0))

    def key(self, settings: StudySettings) -> str:
        extra: dict[str, Any] = {}
        spec = asdict(self)
        if self.method in NAI_METHODS:
            from neuron_importance.continual import make_strategy

            # the options the run resolves to, so that a change of NAI's defaults never
            # reuses old runs
            opts = asdict(make_strategy(self.method, dict(self.hyperparameters)).options)
            extra["nai_options"] = {k: v for k, v in opts.items()
                                    if _NAI_KEY_NEUTRAL.get(k, _NO_VALUE) != v}
        # a hyperparameter written out at its key-neutral value is the run recorded before it
        # existed (or before nai-tc's default moved off it, or without SI's ξ): the same key
        neutral = _key_neutral(self.method)
        spec["hyperparameters"] = [(k, v) for k, v in self.hyperparameters
                                   if neutral.get(k, _NO_VALUE) != v]
        if settings.dropout:
            # only when set, so runs recorded before the option existed keep their keys
            extra["dropout"] = float(settings.dropout)
        if settings.head_warmup:
            extra["head_warmup"] = int(settings.head_warmup)
        if settings.conv:
            extra["conv"] = [int(c) for c in settings.conv]
        # asdict(self) holds the training seed under "seed", the key under which earlier
        # studies stored settings.seed, so their runs keep their keys
        blob = json.dumps({**spec, "limit": settings.limit, "hidden": settings.hidden,
                           "batch": settings.batch_size, "patience": settings.patience,
                           "permuted_tasks": settings.permuted_tasks, **extra},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_runs(path: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return runs
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write: that run is simply redone
            runs[rec["key"]] = rec
    return runs


def _append(path: Path, record: Mapping[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- workers

_STREAMS: dict[tuple, Any] = {}


def _stream(benchmark: str, data_dir: str | None, limit: int | None, n_tasks: int | None,
            device: str = "cpu"):
    from neuron_importance.continual import make_stream

    key = (benchmark, data_dir, limit, n_tasks, device)
    if key not in _STREAMS:
        _STREAMS.clear()  # one benchmark's tensors at a time per process
        _STREAMS[key] = make_stream(
            benchmark, data_dir=data_dir, limit=limit,
            n_tasks=n_tasks if benchmark == "permuted-mnist" else None, device=device,
        )
    return _STREAMS[key]


def _execute(spec: RunSpec, settings: StudySettings, data_dir: str | None, ckpt_dir: str,
             key: str) -> dict[str, Any]:
    """Run one spec (in the parent or a worker process) and return its JSON record."""
    import torch

    from neuron_importance.continual import run_sequence

    if settings.jobs > 1:
        torch.set_num_threads(1)
    stream = _stream(spec.benchmark, data_dir, settings.limit, settings.permuted_tasks,
                     settings.device)
    stream = stream.reordered(spec.order)
    config = settings.train_config(spec.epochs, spec.seed, spec.scenario)
    ckpt = Path(ckpt_dir) / f"{key}.pt"
    res = run_sequence(stream, spec.method, dict(spec.hyperparameters), config, checkpoint=ckpt)
    rec = {"key": key, "phase": spec.phase, "variant": spec.variant, **res.to_json(),
           "device": _device_name(settings.device)}
    identities = list(spec.order)
    rec["final_by_task"] = {str(identities[j]): res.acc_matrix[-1][j]
                            for j in range(len(identities))}
    return rec


def append_runs(specs: Sequence[RunSpec], settings: StudySettings, out: str | Path,
                data_dir: str | None, ckpt_dir: str | Path, jobs: int = 1,
                done_files: Sequence[str | Path] = ()) -> int:
    """Run the specs not yet recorded, appending each record to ``out`` as it finishes.

    For runs added beside a study (another strength, seed or option on chosen orders): a spec
    whose key is already in ``out`` or in one of ``done_files`` is skipped, so a rerun resumes.
    The records are study records (``_execute``), keyed as ``run_study`` keys them. Returns the
    number of runs trained.
    """
    out = Path(out)
    done = {k for path in (*map(Path, done_files), out) for k in _read_runs(path)}
    todo = [(s, k) for s in specs if (k := s.key(settings)) not in done]
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(jobs) as ex:
        futures = [ex.submit(_execute, s, settings, data_dir, str(ckpt_dir), k) for s, k in todo]
        for fut in futures:
            _append(out, fut.result())
    return len(todo)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit in the main thread, so cleanup code runs (default: none)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- the study


def run_study(
    out_dir: str | Path,
    settings: StudySettings,
    data_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the study and write results.json, report.md and the figures."""
    settings.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    runs_path = out / "runs.jsonl"
    done = _read_runs(runs_path)
    if done:
        log(f"resuming: {len(done)} finished runs found in {runs_path}")
    from neuron_importance.continual import BENCHMARKS, SHARED_HEAD_BENCHMARKS, NAIOptions

    inert = sorted(set(settings.nai_options_for("nai")) & _CONDUCTANCE_ONLY)
    if inert and "nai" in settings.methods + settings.class_il_methods \
            and NAIOptions(**settings.nai_options_for("nai")).source != "conductance":
        log(f"note: {', '.join(inert)} only act with source='conductance'; method nai "
            "(activation statistics) ignores them, yet its runs are keyed apart and retrained")
    data = None if data_dir is None else str(data_dir)
    t_start = time.perf_counter()
    phase_seconds: dict[str, float] = {}

    def n_tasks(b: str) -> int:
        if b == "permuted-mnist" and settings.permuted_tasks:
            return settings.permuted_tasks
        return BENCHMARKS[b]

    orders = {b: task_orders(n_tasks(b), settings.n_orders, settings.seed)
              for b in set(settings.benchmarks) | set(settings.ablation_benchmarks)}

    def execute_all(phase: str, specs: list[RunSpec]) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        keyed = [(s, s.key(settings)) for s in specs]
        for s, k in keyed:
            # a run identical to a finished tuning run but for its phase (order 0 at the
            # chosen strength) is that run: training is seeded and does not depend on the
            # phase, so it is copied, not repeated; and a tuning run is a finished main run
            # of order 0 at that point (one appended beside the study, e.g. a screen)
            twin = replace(s, phase="main" if s.phase == "tune" else "tune", variant="")
            twin_key = twin.key(settings)
            if k not in done and twin_key in done:
                rec = json.loads(json.dumps({**done[twin_key], "key": k, "phase": s.phase,
                                             "variant": s.variant, "reused_from": twin_key}))
                _append(runs_path, rec)
                done[k] = rec
        todo = [(s, k) for s, k in keyed if k not in done]
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=phase,
                   disable=not progress, unit="run")

        def finish(rec: dict[str, Any]) -> None:
            _append(runs_path, rec)
            done[rec["key"]] = rec
            (ckpt_dir / f"{rec['key']}.pt").unlink(missing_ok=True)
            bar.update(1)
            bar.set_postfix_str(f"{rec['benchmark']} {rec['method']} {rec['acc']:.2f}")

        try:
            if settings.jobs == 1 or len(todo) <= 1:
                for s, k in todo:
                    finish(_execute(s, settings, data, str(ckpt_dir), k))
            else:
                import multiprocessing as mp

                with ProcessPoolExecutor(settings.jobs, mp_context=mp.get_context("spawn")) as ex:
                    try:
                        with _sigterm_as_exit():
                            # group by benchmark: each worker loads one benchmark at a time
                            pending = {ex.submit(_execute, s, settings, data, str(ckpt_dir), k)
                                       for s, k in sorted(todo, key=lambda sk: sk[0].benchmark)}
                            while pending:
                                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                                for fut in finished:
                                    finish(fut.result())
                    except BaseException:
                        # a kill or Ctrl-C of the study must not leave workers training (and
                        # checkpointing) runs that nobody will collect; their last finished
                        # task is on disk, and the next call resumes from it
                        for proc in list((getattr(ex, "_processes", None) or {}).values()):
                            proc.terminate()
                        raise
        finally:
            bar.close()
        phase_seconds[phase] = phase_seconds.get(phase, 0.0) + time.perf_counter() - t0
        return [done[k] for _, k in keyed]

    train_seeds = [settings.seed + i for i in range(settings.seeds)]

    def spec(phase, b, m, order, hp, scenario="task", variant="", seed=settings.seed):
        return RunSpec(phase, b, m, tuple(order), tuple(sorted(hp.items())),
                       settings.epochs.get(b, max(settings.epochs.values())), scenario, variant,
                       seed)

    hp_of = settings.hyperparameters_for

    # 1. tuning on order 0 (or the first tune_orders orders) with the validation split; a
    #    grid whose best point lies on its edge is extended by one step beyond that edge (up
    #    to max_extensions times), the same rule for every method, so no method is held back
    #    by where its grid happened to end
    grids = {b: {m: {k: list(v) for k, v in settings.grids[m].items()}
                 for m in settings.methods if m in settings.grids}
             for b in settings.benchmarks}
    tune_recs: list[dict[str, Any]] = []
    which = "best" if settings.selection == "best" else "chosen (one-SE)"
    for _round in range(settings.max_extensions + 1):
        tune_specs = [spec("tune", b, m, o, hp_of(m, p), seed=sd)
                      for b in settings.benchmarks for m in grids[b]
                      for p in _grid_points(grids[b][m])
                      for o in orders[b][: settings.tune_orders] for sd in train_seeds]
        tune_recs = execute_all("tune", tune_specs)
        tuning = _tuning_table(tune_specs, tune_recs, settings.benchmarks)
        extended = False
        for b in settings.benchmarks:
            for m, grid in grids[b].items():
                recs = tuning[b].get(m, [])
                new_points = _edge_extension(grid, recs, m, settings.selection)
                if new_points and _round == settings.max_extensions:
                    # the last round's grid has been run; an extension now would not be
                    log(f"{b} {m}: {which} grid point still on the edge after "
                        f"{settings.max_extensions} extension(s); kept (max_extensions)")
                elif new_points:
                    extended = True
                    grid.update(new_points)
                    log(f"{b} {m}: {which} grid point on the edge; grid extended to "
                        f"{new_points}")
        if not extended:
            break
    chosen: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in settings.benchmarks}
    for b in settings.benchmarks:
        for m in settings.methods:
            if m in tuning[b]:
                best = select_point(m, tuning[b][m], settings.selection)
                chosen[b][m] = dict(best["hyperparameters"])
            else:
                chosen[b][m] = hp_of(m, {}) if m not in NAI_METHODS else {}
        log(f"{b}: tuned on {_tuning_orders_text(settings.tune_orders)} (validation): "
            + "; ".join(f"{m} {v}" for m, v in chosen[b].items() if v))

    # 2. main runs: every method on every order (task-incremental), plus class-IL
    main_specs = [spec("main", b, m, o, chosen[b][m], seed=sd)
                  for b in settings.benchmarks for m in settings.methods for o in orders[b]
                  for sd in train_seeds]
    # class-IL puts one head on benchmarks that have one per task
    split_benchmarks = [b for b in settings.benchmarks if b not in SHARED_HEAD_BENCHMARKS]
    class_specs = [spec("class-il", b, m, orders[b][0],
                        chosen[b].get(m, {}), scenario="class")
                   for b in split_benchmarks for m in settings.class_il_methods]
    main_recs = execute_all("main", main_specs)
    class_recs = execute_all("class-il", class_specs)

    # 3. NAI ablation with the tuned λ; with no variant to compare there is no ablation, so
    # its default runs (orders the main phase may not have at that seed) are not trained
    abl_specs = []
    for b in settings.ablation_benchmarks if settings.ablation else []:
        if "nai" not in chosen.get(b, {}):
            continue
        base = chosen[b]["nai"]
        for variant in [{}] + settings.ablation:
            name = ",".join(f"{k}={v}" for k, v in variant.items()) or "default"
            for o in orders[b][: settings.ablation_orders]:
                abl_specs.append(spec("ablation", b, "nai", o, {**base, **variant},
                                      variant=name))
    abl_recs = execute_all("ablation", abl_specs)

    res = _assemble(settings, orders, chosen, tuning, main_recs, class_recs, abl_recs)
    res["seconds"] = {"total_this_invocation": round(time.perf_counter() - t_start, 1),
                      "by_phase_this_invocation": {k: round(v, 1) for k, v in
                                                   phase_seconds.items()},
                      "sum_of_run_seconds": round(sum(r["seconds"] for r in done.values()
                                                     if "reused_from" not in r), 1)}
    res["seconds"].update(_earlier_invocations(out / "results.json",
                                               res["seconds"]["total_this_invocation"]))
    res["files"] = _write_outputs(out, res)
    return res


def _earlier_invocations(previous: Path, this: float) -> dict[str, Any]:
    """The wall times of the invocations that wrote ``previous`` (the folder's results.json)
    before this one, kept so that a rerun which only rewrites the report (no training left)
    does not lose the study's wall time; with their sum and this invocation's."""
    earlier: list[float] = []
    try:
        sec = json.loads(previous.read_text())["seconds"]
        earlier = [*sec.get("earlier_invocations", []), sec["total_this_invocation"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no earlier results.json here, or one we cannot read: nothing to carry
    return {"earlier_invocations": earlier,
            "total_all_invocations": round(sum(earlier) + this, 1)}


#: records written before runs named their device were all trained on the CPU
_UNRECORDED_DEVICE = "cpu (not recorded)"


def per_task_learned_final(
    by_order: Mapping[tuple[int, ...], Sequence[Mapping[str, Any]]],
) -> dict[str, dict[str, float]]:
    """Per task identity: accuracy right after it was trained (R_{i,i}), at the end (R_{T,i})
    and their difference, each a mean over the orders of the mean over the order's seeds.

    Tells a task that is learned badly (intransigence) from one that is learned well and then
    overwritten (forgetting), which ACC and BWT, averaged over tasks, cannot. ``by_order``
    maps each order to its runs' records (only ``acc_matrix`` is read); also used by
    ``docs/results/second_seed.py``."""
    from neuron_importance.continual import learned_and_final

    sums: dict[int, np.ndarray] = {}
    for order, runs in by_order.items():
        per_run = [learned_and_final(r["acc_matrix"], order) for r in runs]
        for t in order:
            v = np.mean([[lf[t][0], lf[t][1]] for lf in per_run], axis=0)
            sums[t] = v if t not in sums else sums[t] + v
    n = len(by_order)
    return {str(t): {"learned": float(v[0] / n), "final": float(v[1] / n),
                     "lost": float((v[0] - v[1]) / n)} for t, v in sorted(sums.items())}


def _assemble(settings, orders, chosen, tuning, main_recs, class_recs, abl_recs):
    runs = [{k: r[k] for k in ("benchmark", "method", "order", "seed", "acc", "bwt",
                               "forgetting", "fwt", "acc_matrix", "hyperparameters", "seconds",
                               "final_by_task", "init_acc")}
            | ({"reused_from": r["reused_from"]} if "reused_from" in r else {})
            | ({"task_uncertainty": r["task_uncertainty"]} if "task_uncertainty" in r else {})
            | {"device": r.get("device", _UNRECORDED_DEVICE)}
            for r in main_recs]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for b in settings.benchmarks:
        summary[b] = {}
        for m in settings.methods:
            rs = [r for r in main_recs if r["benchmark"] == b and r["method"] == m]
            by_order: dict[tuple[int, ...], list[Mapping[str, Any]]] = {}
            for r in rs:
                by_order.setdefault(tuple(r["order"]), []).append(r)
            # one number per order: the mean over its training seeds
            accs = np.array([np.mean([r["acc"] for r in g]) for g in by_order.values()])
            per_task = {}
            for t in rs[0]["final_by_task"]:
                per_task[t] = float(np.std([np.mean([r["final_by_task"][t] for r in g])
                                            for g in by_order.values()]))
            per_task_learned = per_task_learned_final(by_order)
            n_seeds = min(len(g) for g in by_order.values())
            seed_std = (float(np.mean([np.std([r["acc"] for r in g])
                                       for g in by_order.values()])) if n_seeds > 1 else None)
            summary[b][m] = {
                "mean": float(accs.mean()), "std": float(accs.std()),
                "worst": float(accs.min()), "best": float(accs.max()),
                "n_seeds": n_seeds, "seed_std": seed_std,
                "bwt": float(np.mean([r["bwt"] for r in rs])),
                "forgetting": float(np.mean([r["forgetting"] for r in rs])),
                "fwt": float(np.mean([r["fwt"] for r in rs])),
                "task_order_sensitivity": per_task,
                "mean_task_order_sensitivity": float(np.mean(list(per_task.values()))),
                "per_task": per_task_learned,
                "n_orders": len(by_order),
                "hyperparameters": chosen[b][m],
            }
    from neuron_importance.continual.seed_bootstrap import acc_table, goal_support

    goals = {}
    # how often each goal comparison holds when the training seeds are re-drawn
    goal_support_by_benchmark: dict[str, dict[str, Any]] = {}
    regs = [m for m in ("ewc", "si", "mas") if m in settings.methods]
    for b in settings.benchmarks:
        s = summary[b]
        g: dict[str, Any] = {}
        variants = [nm for nm in NAI_METHODS if nm in s]
        if variants and b in GOALS:
            g["acc_goal"] = GOALS[b]
        if variants and regs:
            best_mean = max(s[m]["mean"] for m in regs)
            best_worst = max(s[m]["worst"] for m in regs)
            min_reg_std = min(s[m]["std"] for m in regs)
            g["best_baseline_mean"], g["best_baseline_worst"] = best_mean, best_worst
            g["smallest_baseline_std"] = min_reg_std
            g["smallest_std_any_method_but_finetune"] = min(
                s[m]["std"] for m in settings.methods if m != "finetune")
        for nm in variants:
            pre = nm.replace("-", "_")  # "nai_..." keys as before, "nai_tc_..." for nai-tc
            if b in GOALS:
                g[f"{pre}_meets_acc_goal"] = s[nm]["mean"] >= GOALS[b]
            if regs:
                g[f"{pre}_mean_at_or_above_best_baseline"] = s[nm]["mean"] >= best_mean
                g[f"{pre}_worst_at_or_above_best_baseline"] = s[nm]["worst"] >= best_worst
                g[f"{pre}_smallest_std_among_regularisers"] = s[nm]["std"] <= min_reg_std
        goals[b] = g
        if variants and regs:
            table = acc_table([r for r in main_recs if r["benchmark"] == b])
            for nm in variants:
                support = goal_support(table, nm, regs)
                if support is not None:
                    goal_support_by_benchmark.setdefault(b, {})[nm] = support
    ablation: dict[str, dict[str, Any]] = {}
    for r in abl_recs:
        a = ablation.setdefault(r["benchmark"], {}).setdefault(
            r["variant"], {"accs": [], "val_accs": [], "bwts": []})
        a["accs"].append(r["acc"])
        a["val_accs"].append(r["val_acc"])
        a["bwts"].append(r["bwt"])
    for b in ablation:
        for v in ablation[b].values():
            v["mean"] = float(np.mean(v["accs"]))
            v["worst"] = float(np.min(v["accs"]))
            v["val_mean"] = float(np.mean(v["val_accs"]))
            v["bwt"] = float(np.mean(v["bwts"]))
    class_il = {f"{r['benchmark']}/{r['method']}": {"acc": r["acc"], "bwt": r["bwt"],
                                                    "acc_matrix": r["acc_matrix"]}
                for r in class_recs}
    from neuron_importance.continual import NAI_TC_DEFAULTS, NAI_TC_OPTIONS, NAIOptions

    return {
        "experiment": "continual",
        "settings": {**asdict(settings), "nai_defaults": asdict(NAIOptions()),
                     "nai_tc_options": {**NAI_TC_OPTIONS, **NAI_TC_DEFAULTS}},
        "machine": machine_info(),
        "orders": orders,
        "tuning": tuning,
        "chosen_hyperparameters": chosen,
        "runs": runs,
        "summary": summary,
        "goals": goals,
        "goal_support": goal_support_by_benchmark,
        "class_incremental": class_il,
        "ablation": ablation,
        "metric_definitions": {
            "acc": "mean over tasks of the final test accuracy (%)",
            "bwt": "1/(T-1) sum_{i<T} (R[T,i] - R[i,i]) (GEM, averaged over T-1)",
            "forgetting": "1/(T-1) sum_{j<T} (max_{l<T} R[l,j] - R[T,j]) (Chaudhry et al.)",
            "fwt": "1/(T-1) sum_{i>=2} (R[i-1,i] - b_i), b = accuracy at initialisation",
            "std": "population std (ddof 0) across task orders of the final ACC (each order's "
                   "ACC the mean over its training seeds)",
            "seed_std": "std (ddof 0) of the final ACC across training seeds within one order, "
                        "averaged over orders (null with one seed)",
            "task_order_sensitivity": "std across orders of one task identity's final "
                                      "accuracy",
            "per_task": "per task identity: learned = R[i,i] at the task's position i, final "
                        "= R[T,i], lost = learned - final; means over orders of the seeds' "
                        "mean",
        },
    }


# ---------------------------------------------------------------------------- outputs


def _plot_acc_by_order(res: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(res["summary"])
    fig, axes = plt.subplots(1, len(benches), figsize=(5.2 * len(benches), 4), squeeze=False)
    for ax, b in zip(axes[0], benches):
        methods = list(res["summary"][b])
        # zoom on the regularised methods; fine-tuning may lie far below
        good = [r["acc"] for r in res["runs"] if r["benchmark"] == b and r["method"] != "finetune"]
        lo = min(good) - 1.0 if good else -math.inf
        for i, m in enumerate(methods):
            accs = np.array([r["acc"] for r in res["runs"]
                             if r["benchmark"] == b and r["method"] == m])
            color = "C3" if m in NAI_METHODS else "C0"
            shown = accs[accs >= lo]
            ax.scatter([i] * len(shown), shown, s=18, alpha=0.7, color=color)
            if np.mean(accs) >= lo:
                ax.plot([i - 0.3, i + 0.3], [np.mean(accs)] * 2, color="k", lw=1.5)
            below = accs[accs < lo]
            if below.size:  # points under the zoomed axis: a marker at its floor and their values
                ax.scatter([i], [lo], marker="v", s=40, color=color, clip_on=False)
                ax.annotate(f"{below.size} below\nmean {accs.mean():.1f}", (i, lo),
                            xytext=(0, 6), textcoords="offset points", ha="center",
                            fontsize=7)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=45, ha="right")
        ax.set_title(f"{b}: final ACC per task order")
        ax.set_ylabel("ACC (%)")
        if good:
            ax.set_ylim(lo, min(100.0, max(good) + 0.3))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_order0_grid(res: Mapping[str, Any], path: Path, draw: Callable[[Any, dict], None],
                      title: str, width: float, sharey: bool = False) -> None:
    """One small panel per (benchmark, method) drawn by ``draw(ax, run)`` for order 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(res["summary"])
    methods = list(next(iter(res["summary"].values())))
    fig, axes = plt.subplots(len(benches), len(methods),
                             figsize=(width * len(methods), 2.0 * len(benches)),
                             squeeze=False, sharey="row" if sharey else False)
    for i, b in enumerate(benches):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            rs = [r for r in res["runs"] if r["benchmark"] == b and r["method"] == m]
            if not rs:
                ax.axis("off")
                continue
            draw(ax, rs[0])  # the first run of a benchmark/method is order 0
            if i == 0:
                ax.set_title(m, fontsize=9)
            if j == 0:
                ax.set_ylabel(b, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_matrix(ax: Any, run: dict) -> None:
    mat = np.array(run["acc_matrix"])
    t = mat.shape[0]
    ax.imshow(np.where(np.tril(np.ones((t, t))) > 0, mat, np.nan), vmin=50, vmax=100,
              cmap="viridis")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"ACC {run['acc']:.1f}", fontsize=8)


def _draw_task_curves(ax: Any, run: dict) -> None:
    mat = np.array(run["acc_matrix"])
    t = mat.shape[0]
    for k in range(t):
        ax.plot(range(k + 1, t + 1), mat[k:, k], lw=1, marker="o", ms=2)
    ax.set_xticks(range(1, t + 1, max(1, t // 5)))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _plot_matrices(res: Mapping[str, Any], path: Path) -> None:
    _plot_order0_grid(res, path, _draw_matrix, "accuracy matrix R[i, j] (row: after task i, "
                      "column: task j), order 0, colour 50-100 %", 1.9)


def _plot_task_curves(res: Mapping[str, Any], path: Path) -> None:
    """Per-task accuracy (%) after each training stage (columns of R), order 0."""
    _plot_order0_grid(res, path, _draw_task_curves, "accuracy (%) of each task (one line per "
                      "task) after each training stage, order 0", 2.1, sharey=True)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _grid_point_label(method: str, hp: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """A tuning point as the report names it: the strength alone for a one-parameter grid,
    ``lam=0.3, floor=0.01`` for a joint one."""
    params = list(settings.get("grids", {}).get(method, {})) or [
        k for k in hp if k in ("lam", "c")]
    # a run recorded at a switch's key-neutral value may not name it (it predates the switch)
    neutral = _key_neutral(method)
    vals = {k: hp.get(k, neutral.get(k)) for k in params}
    if len(vals) == 1:
        return str(next(iter(vals.values())))
    return ", ".join(f"{k}={v}" for k, v in vals.items())


def _report(res: Mapping[str, Any], files: Sequence[str]) -> str:
    s = res["settings"]
    seeded = s.get("seeds", 1) > 1
    tuned_on = _tuning_orders_text(s.get("tune_orders", 1))
    lines = [
        "# Continual learning with neuron activation importance: task-order study", "",
        f"Benchmarks {', '.join(s['benchmarks'])}; {s['n_orders']} task orders each "
        f"(identity, reverse, seeded permutations); "
        + (f"CNN: 5x5 conv + 2x2 max-pool blocks of {s['conv']} channels, then fully "
           f"connected layers {s['hidden']}" if s.get("conv") else f"MLP {s['hidden']}")
        + (f" with dropout {s['dropout']} after each hidden layer" if s.get("dropout") else "")
        + (f" ({s['head_warmup']} epoch(s) of training each new head alone, the trunk "
           "frozen, before each task)" if s.get("head_warmup") else "")
        + " with one head per task "
        "(Permuted MNIST: one shared head); Adam lr 1e-3, batch "
        f"{s['batch_size']}, epochs per task {s['epochs']}, lr/3 on a validation plateau "
        f"(patience {s['patience']}), best-validation weights restored. Hyperparameters tuned "
        f"on {tuned_on} with the validation split (10 % of each task's training data"
        + ("; its mean over these orders" if s.get("tune_orders", 1) > 1 else "") + "), then "
        "frozen" + (": of the grid points within one standard error (over the seeds) of the "
                    "best validation ACC, the strongest penalty (one-SE rule)."
                    if s.get("selection") == "one-se" else ".")
        + (f" Quick mode: {s['limit']} training images." if s["limit"] else "")
        + (f" {s['seeds']} training seeds per order: tuning averages the validation ACC over "
           "them, and each order's ACC is their mean (mean, std and worst are over the "
           "orders of these means; seed std is the std across seeds within an order, "
           "averaged)." if seeded else ""), "",
    ]
    for b, ms in res["summary"].items():
        lines += [f"## {b}", "",
                  "| method | mean ACC | std | worst | " + ("seed std | " if seeded else "")
                  + "BWT | forgetting | order sensitivity | hyperparameters |",
                  "|---|---|---|---|---|---|---|---|" + ("---|" if seeded else "")]
        for m, v in ms.items():
            shown = {"lam", "c", "gamma", *s.get("grids", {}).get(m, {})}
            hp = ", ".join(f"{k}={w}" for k, w in v["hyperparameters"].items()
                           if k in shown) or "-"
            seed_cell = ""
            if seeded:
                seed_cell = "- | " if v["seed_std"] is None else f"{_fmt(v['seed_std'])} | "
            lines.append(f"| {m} | {_fmt(v['mean'])} | {_fmt(v['std'])} | {_fmt(v['worst'])} "
                         f"| {seed_cell}{_fmt(v['bwt'])} | {_fmt(v['forgetting'])} | "
                         f"{_fmt(v['mean_task_order_sensitivity'])} | {hp} |")
        lines += _per_task_lines(b, ms)
        g = res["goals"].get(b, {})
        checks = _goal_checks(ms, g)
        if checks:
            # the figures behind each verdict to three decimals: the table's two can show
            # 99.70 for a mean that misses 99.7 (results.json holds them unrounded)
            lines += ["", "Goals:", "", *(f"- {nm}: {text}" for nm, text in checks.items())]
        for nm, sup in res.get("goal_support", {}).get(b, {}).items():
            lines += ["", f"Seed bootstrap of {nm}'s goals ({sup['n_boot']} paired resamples of "
                      "each order's seeds; fraction of resamples in which the comparison holds, "
                      "and the 95 % interval of the difference to the best baseline): " + "; ".join(
                          f"{k} {sup[k]:.2f} ({sup[f'{k}_diff']['value']:+.2f}, "
                          f"[{sup[f'{k}_diff']['ci95'][0]:+.2f}, "
                          f"{sup[f'{k}_diff']['ci95'][1]:+.2f}])"
                          for k in ("mean", "worst", "std")) + f"; all three {sup['all']:.2f}."]
        lines.append("")
        tun = res["tuning"].get(b, {})
        if tun:
            lines += [f"Tuning grid ({tuned_on}; validation ACC / test ACC):", ""]
            for m, pts in tun.items():
                cells = "; ".join(f"{_grid_point_label(m, p['hyperparameters'], s)}: "
                                  f"{_fmt(p['val_acc'])}/{_fmt(p['test_acc'])}" for p in pts)
                lines.append(f"- {m}: {cells}")
            lines.append("")
    if res["class_incremental"]:
        lines += ["## Class-incremental (one 10-way head, order 0)", "",
                  "| benchmark/method | ACC | BWT |", "|---|---|---|"]
        for k, v in res["class_incremental"].items():
            lines.append(f"| {k} | {_fmt(v['acc'])} | {_fmt(v['bwt'])} |")
        lines.append("")
    for b, variants in res["ablation"].items():
        lines += [f"## NAI ablation on {b} (tuned λ, {s['ablation_orders']} orders)", "",
                  "| variant | mean ACC | worst | val ACC | BWT |", "|---|---|---|---|---|"]
        for name, v in sorted(variants.items(), key=lambda kv: -kv[1]["val_mean"]):
            lines.append(f"| {name} | {_fmt(v['mean'])} | {_fmt(v['worst'])} | "
                         f"{_fmt(v['val_mean'])} | {_fmt(v['bwt'])} |")
        lines.append("")
    m = res["machine"]
    lines += [f"Figures: {', '.join(files)}.", "",
              f"Run time: {res['seconds']['sum_of_run_seconds']} s of training summed over "
              f"runs; this invocation {res['seconds']['total_this_invocation']} s (all "
              f"{len(res['seconds']['earlier_invocations']) + 1} invocations into "
              f"this folder: {res['seconds']['total_all_invocations']} s) on "
              f"{m['cpu']} ({m['logical_cpus']} CPUs), torch {m['torch']}, jobs "
              f"{s['jobs']}.", ""]
    devices: dict[str, int] = {}
    for r in res["runs"]:
        d = r.get("device", _UNRECORDED_DEVICE)
        devices[d] = devices.get(d, 0) + 1
    if set(devices) - {"cpu", _UNRECORDED_DEVICE}:
        lines += ["Runs of the table by device: " + "; ".join(
            f"{d}: {n}" for d, n in sorted(devices.items())) + ".", ""]
    return "\n".join(lines)


def _per_task_lines(benchmark: str, ms: Mapping[str, Any]) -> list[str]:
    """The report's per-task table: where each method loses accuracy."""
    with_table = {m: v["per_task"] for m, v in ms.items() if v.get("per_task")}
    if not with_table:  # results.json written before the per-task table existed
        return []
    tasks = list(next(iter(with_table.values())))
    split = benchmark.startswith("split-")
    head = [f"{t} ({2 * int(t)}/{2 * int(t) + 1})" if split else t for t in tasks]
    lines = ["", "Per task (mean over orders and seeds): accuracy right after learning it → "
             "at the end" + (" (task t holds classes 2t and 2t+1)" if split else "") + ":", "",
             "| method | " + " | ".join(f"task {h}" for h in head) + " |",
             "|---|" + "---|" * len(tasks)]
    for m, pt in with_table.items():
        lines.append(f"| {m} | " + " | ".join(
            f"{_fmt(pt[t]['learned'])} → {_fmt(pt[t]['final'])}" for t in tasks) + " |")
    return lines


def _write_outputs(out: Path, res: dict[str, Any]) -> list[str]:
    files = ["acc_by_order.png", "accuracy_matrices.png", "task_curves.png"]
    _plot_acc_by_order(res, out / files[0])
    _plot_matrices(res, out / files[1])
    _plot_task_curves(res, out / files[2])
    all_files = ["results.json", "report.md", "runs.jsonl", *files]
    res_with_files = {**res, "files": all_files}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(res_with_files, indent=1, default=str))
    os.replace(tmp, out / "results.json")
    (out / "report.md").write_text(_report(res_with_files, files))
    return all_files


def reproduce(
    out_dir: str | Path, quick: bool = False, data_dir: str | Path | None = None, seed: int = 0,
    progress: bool = True, log: Callable[[str], None] = print,
    settings: StudySettings | None = None,
    grid_overrides: Mapping[str, Mapping[str, Sequence[Any]]] | None = None, **overrides: Any,
) -> dict[str, Any]:
    """Run the full (or quick) study; ``overrides`` replace fields of the preset.

    ``grid_overrides`` replaces the tuning grid of the methods it names (``{"nai": {"lam":
    [0.01]}}``) and keeps the preset's grids of the others.
    """
    if settings is None:
        settings = StudySettings.quick_mode(seed) if quick else StudySettings.full(seed)
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if grid_overrides:
        unknown = sorted(set(grid_overrides) - set(settings.grids))
        if unknown:
            raise ValueError(f"no tuning grid for {', '.join(unknown)}; methods with a grid: "
                             f"{', '.join(sorted(settings.grids))}")
        grids = {m: {k: list(v) for k, v in g.items()} for m, g in settings.grids.items()}
        grids.update({m: {k: list(v) for k, v in g.items()} for m, g in grid_overrides.items()})
        settings = replace(settings, grids=grids)
    return run_study(out_dir, settings, data_dir=data_dir, progress=progress, log=log)


def headline(res: Mapping[str, Any]) -> list[str]:
    lines = []
    for b, ms in res["summary"].items():
        parts = [f"{m} {v['mean']:.2f}±{v['std']:.2f} (worst {v['worst']:.2f})"
                 for m, v in ms.items()]
        lines.append(f"{b}: " + "; ".join(parts))
        lines += [f"  {b} goals of {nm}: {text}"
                  for nm, text in _goal_checks(ms, res.get("goals", {}).get(b, {})).items()]
    return lines


def _goal_checks(ms: Mapping[str, Any], g: Mapping[str, Any]) -> dict[str, str]:
    """Per NAI variant, each goal met or missed, with the figures to three decimals.

    The summary line rounds to two, which can show 99.70 for a mean of 99.695 that misses
    the 99.7 goal; this text says which way each comparison went."""
    out = {}
    for nm in NAI_METHODS:
        pre = nm.replace("-", "_")
        if nm not in ms:
            continue
        v = ms[nm]
        checks = []
        if f"{pre}_meets_acc_goal" in g:
            checks.append(f"ACC >= {g['acc_goal']}: {_met(g[f'{pre}_meets_acc_goal'])} "
                          f"({v['mean']:.3f})")
        if f"{pre}_mean_at_or_above_best_baseline" in g:
            checks += [
                f"mean >= best baseline's: "
                f"{_met(g[f'{pre}_mean_at_or_above_best_baseline'])} "
                f"({v['mean']:.3f} vs {g['best_baseline_mean']:.3f})",
                f"worst >= best baseline's: "
                f"{_met(g[f'{pre}_worst_at_or_above_best_baseline'])} "
                f"({v['worst']:.3f} vs {g['best_baseline_worst']:.3f})",
                f"std <= the baselines' smallest: "
                f"{_met(g[f'{pre}_smallest_std_among_regularisers'])} ({v['std']:.3f} vs "
                f"{g['smallest_baseline_std']:.3f})"]
        if checks:
            out[nm] = "; ".join(checks)
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"
