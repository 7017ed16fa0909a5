"""Task streams built from the real MNIST / Fashion-MNIST files.

A :class:`TaskStream` is a list of :class:`Task` objects in training order. Each task holds
its own train / validation / test tensors, already standardised and flattened to 784 features
(MNIST statistics: mean 0.1307, std 0.3081, as in the UCL/AGS-CL protocol; the same constants
for Fashion-MNIST would be wrong, so its train statistics are used).

Benchmarks (``../shared/docs/methods/continual-learning.md`` §3):

* ``split-mnist``: 5 tasks {0,1},{2,3},{4,5},{6,7},{8,9}; task-incremental labels are 0/1
  inside each task (one 2-way head per task), class-incremental labels are the digits.
* ``split-fashion-mnist``: the same five class pairs of Fashion-MNIST.
* ``permuted-mnist``: 10 tasks, each a seeded pixel permutation of all of MNIST (no task is
  the unpermuted data; the permutation seed is ``perm_seed + task identity``), one shared
  10-way head.

**Task order.** ``order`` is a permutation of the task *identities* ``0..T-1``; the stream
trains ``tasks[order[0]]`` first. Task identities (and so heads, class pairs and pixel
permutations) do not depend on the order, which is what makes results of different orders
comparable task by task.

**Validation.** A fixed fraction (default 10 %) of each task's training examples, drawn with a
seed that depends only on the task identity, is held out for early stopping and
hyperparameter tuning; the test split is never used for either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..data.mnist import load_mnist

__all__ = [
    "BENCHMARKS",
    "Task",
    "TaskStream",
    "check_order",
    "make_stream",
]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: benchmark name -> number of tasks
BENCHMARKS: dict[str, int] = {"split-mnist": 5, "permuted-mnist": 10, "split-fashion-mnist": 5}
#: benchmarks whose tasks share one output head (the others have one head per task)
SHARED_HEAD_BENCHMARKS: frozenset[str] = frozenset({"permuted-mnist"})

_SPLIT_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


@dataclass
class Task:
    """One task: standardised ``(N, 784)`` float32 inputs and int64 labels per split.

    ``y_*`` are the task-incremental labels (``0..n_classes-1`` within the task's head);
    ``yg_*`` the global labels used by class-incremental evaluation (the digit / garment
    class; for Permuted MNIST the same as ``y_*``).
    """

    identity: int
    name: str
    classes: tuple[int, ...]
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    yg_train: Tensor
    yg_val: Tensor
    yg_test: Tensor

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass
class TaskStream:
    """Tasks in training order, plus what a model needs to know about the heads."""

    benchmark: str
    tasks: list[Task]
    order: tuple[int, ...]
    #: ``True``: one shared output layer (Permuted MNIST); ``False``: one head per task.
    shared_head: bool
    #: outputs of each head (task-IL), indexed by task identity
    head_sizes: tuple[int, ...]
    n_global_classes: int = 10
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def n_inputs(self) -> int:
        return int(self.tasks[0].x_train.shape[1])

    def reordered(self, order: Sequence[int]) -> TaskStream:
        """The same tasks (tensors shared, not copied) in another training order."""
        order_t = check_order(order, len(self.tasks), self.benchmark)
        by_identity = {t.identity: t for t in self.tasks}
        return TaskStream(
            benchmark=self.benchmark, tasks=[by_identity[i] for i in order_t], order=order_t,
            shared_head=self.shared_head, head_sizes=self.head_sizes,
            n_global_classes=self.n_global_classes, info=dict(self.info),
        )


def check_order(order: Sequence[int], n_tasks: int, benchmark: str = "") -> tuple[int, ...]:
    """Validate that ``order`` is a permutation of ``0..n_tasks-1``; return it as a tuple."""
    where = f" for {benchmark}" if benchmark else ""
    try:
        values = tuple(int(o) for o in order)
    except (TypeError, ValueError):
        raise ValueError(f"task order{where} must be a sequence of ints, got {order!r}") from None
    if any(isinstance(o, bool) for o in order) or sorted(values) != list(range(n_tasks)):
        raise ValueError(
            f"task order{where} must be a permutation of 0..{n_tasks - 1}, got {list(values)}"
        )
    return values


def _standardise(x: Tensor, mean: float, std: float) -> Tensor:
    return ((x.reshape(x.shape[0], -1) - mean) / std).contiguous()


def _split_val(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = int(round(n * fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _load(fashion: bool, data_dir: str | Path | None, limit: int | None):
    sub = None
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        name = "fashion-mnist" if fashion else "mnist"
        sub = root / name if (root / name).is_dir() else root
    x_tr, y_tr = load_mnist("train", sub, limit=limit, fashion=fashion)
    x_te, y_te = load_mnist("test", sub, limit=None if limit is None else max(limit // 6, 1),
                            fashion=fashion)
    return x_tr, y_tr, x_te, y_te


def make_stream(
    benchmark: str,
    order: Sequence[int] | None = None,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    perm_seed: int = 1000,
    n_tasks: int | None = None,
    limit: int | None = None,
    device: torch.device | str | None = None,
) -> TaskStream:
    """Build a benchmark's task stream from the IDX files.

    Args:
        benchmark: ``"split-mnist"``, ``"permuted-mnist"`` or ``"split-fashion-mnist"``.
        order: a permutation of the task identities (default: identity order).
        data_dir: the shared data folder (holding ``mnist/`` and ``fashion-mnist/``) or the
            folder with the IDX files; default: the shared data folder.
        val_fraction: fraction of each task's training data held out for validation.
        perm_seed: base seed of the Permuted-MNIST pixel permutations.
        n_tasks: Permuted MNIST only: number of tasks (default 10).
        limit: use only the first ``limit`` training images (and ``limit // 6`` test images)
            of the files; for quick runs and tests.
        device: where the tensors live (default CPU).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(
            f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    total = BENCHMARKS[benchmark]
    if n_tasks is not None:
        if benchmark != "permuted-mnist":
            raise ValueError(f"n_tasks can only be set for permuted-mnist, not {benchmark}")
        if n_tasks < 2:
            raise ValueError(f"n_tasks must be at least 2, got {n_tasks}")
        total = n_tasks
    order_t = check_order(range(total) if order is None else order, total, benchmark)

    fashion = benchmark == "split-fashion-mnist"
    x_tr, y_tr, x_te, y_te = _load(fashion, data_dir, limit)
    if fashion:
        mean, std = float(x_tr.mean()), float(x_tr.std())
    else:
        mean, std = MNIST_MEAN, MNIST_STD
    x_tr, x_te = _standardise(x_tr, mean, std), _standardise(x_te, mean, std)

    tasks: list[Task] = []
    if benchmark == "permuted-mnist":
        train_idx, val_idx = _split_val(x_tr.shape[0], val_fraction, seed=perm_seed - 1)
        for t in range(total):
            g = torch.Generator().manual_seed(perm_seed + t)
            perm = torch.randperm(x_tr.shape[1], generator=g)
            xt, xe = x_tr[:, perm], x_te[:, perm]
            tasks.append(Task(
                t, f"permutation {t}", tuple(range(10)),
                xt[train_idx], y_tr[train_idx], xt[val_idx], y_tr[val_idx], xe, y_te,
                y_tr[train_idx], y_tr[val_idx], y_te,
            ))
        head_sizes = (10,) * total
    else:
        for t, pair in enumerate(_SPLIT_PAIRS):
            sel_tr = (y_tr == pair[0]) | (y_tr == pair[1])
            sel_te = (y_te == pair[0]) | (y_te == pair[1])
            xs, ys = x_tr[sel_tr], y_tr[sel_tr]
            if xs.shape[0] < 2:
                raise ValueError(
                    f"{benchmark}: task {t} (classes {pair}) has {xs.shape[0]} training images; "
                    "the limit is too small"
                )
            train_idx, val_idx = _split_val(xs.shape[0], val_fraction, seed=perm_seed + t)
            local = (ys == pair[1]).long()
            local_te = (y_te[sel_te] == pair[1]).long()
            tasks.append(Task(
                t, f"classes {pair[0]}/{pair[1]}", pair,
                xs[train_idx], local[train_idx], xs[val_idx], local[val_idx],
                x_te[sel_te], local_te,
                ys[train_idx], ys[val_idx], y_te[sel_te],
            ))
        head_sizes = (2,) * total

    if device is not None:
        for task in tasks:
            for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test",
                         "yg_train", "yg_val", "yg_test"):
                setattr(task, name, getattr(task, name).to(device))
    return TaskStream(
        benchmark=benchmark,
        tasks=[tasks[i] for i in order_t],
        order=order_t,
        shared_head=benchmark in SHARED_HEAD_BENCHMARKS,
        head_sizes=head_sizes,
        info={"standardise_mean": mean, "standardise_std": std, "perm_seed": perm_seed,
              "val_fraction": val_fraction, "limit": limit},
    )
