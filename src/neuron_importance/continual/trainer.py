"""One training loop for every strategy, with a checkpoint after every task.

Protocol (UCL / AGS-CL, ``../shared/docs/methods/continual-learning.md`` §3): a fresh Adam
(lr 1e-3) per task, batch 256, up to ``epochs`` epochs; the learning rate is divided by 3 when
the validation loss of the current task has not improved for ``patience`` epochs, and the
best-validation weights are restored at the end of the task. After each task every task of the
stream is evaluated on its test split (a row of the accuracy matrix R) and on its validation
split (the matrix used for hyperparameter tuning, so the test split never chooses anything).

**Interruption.** With ``checkpoint=PATH`` the model, the strategy's state and the rows of R
are written atomically (temporary file + rename) after every finished task; calling
:func:`run_sequence` again with the same arguments resumes after the last finished task, so a
killed run loses at most the task it was in. A non-finite loss stops the run with
:class:`TrainingDiverged` naming the task, epoch and step; the checkpoint of the last finished
task is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import summarise
from .models import ContinualCNN, ContinualMLP, MultiHeadNet
from .nai import NAI, NAIOptions
from .strategies import EWC, L2, MAS, SI, FineTune, Joint, Strategy, TaskData, check_strength
from .streams import TaskStream

__all__ = [
    "METHODS",
    "NAI_TC_DEFAULTS",
    "NAI_TC_OPTIONS",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "make_strategy",
    "run_sequence",
]

#: method name -> the name of its strength hyperparameter (None: has none)
METHODS: dict[str, str | None] = {
    "finetune": None,
    "joint": None,
    "l2": "lam",
    "ewc": "lam",
    "online-ewc": "lam",
    "si": "c",
    "mas": "lam",
    "nai": "lam",
    "nai-tc": "lam",
}

#: NAI with unit importance from Total Conductance: the options ``nai-tc`` fixes
NAI_TC_OPTIONS: dict[str, Any] = {"source": "conductance", "conductance_stat": "sq",
                                  "n_samples": 2000}

#: ``nai-tc``'s defaults that a run may override: conductance to the centred logit z_y − mean
#: z (session 10, docs/continual.md: better mean, worst order and spread than ``logit`` on
#: Split MNIST and Split Fashion-MNIST with 3 seeds); ``conductance_target="logit"`` gives
#: the NAI-TC of the runs recorded before
NAI_TC_DEFAULTS: dict[str, Any] = {"conductance_target": "centred"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the task, epoch and step."""


@dataclass(frozen=True)
class TrainConfig:
    """Training protocol shared by every method of a study.

    ``scenario="task"``: task-incremental (the task's own head at train and test time; Permuted
    MNIST has one shared head). ``scenario="class"``: one 10-way head for all tasks, trained
    and tested on the global labels (class-incremental learning, where regularisers are known
    to fail).
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 5
    lr_factor: float = 3.0
    min_lr: float = 1e-6
    hidden: tuple[int, ...] = (400, 400)
    #: output channels of the 5×5 convolution blocks in front of ``hidden``
    #: (:class:`~.models.ContinualCNN`); empty = an MLP
    conv: tuple[int, ...] = ()
    scenario: str = "task"
    seed: int = 0
    eval_batch_size: int = 4096
    #: dropout after each hidden activation (UCL / HAT MLPs: 0.5); 0 = none
    dropout: float = 0.0
    #: epochs that train the new task's own head alone, the trunk frozen, before the task's
    #: full training (linear probing, then fine-tuning: Kumar et al. 2022), so that the first
    #: steps of a task do not push the shared trunk with the gradients of a random head;
    #: needs one head per task; 0 = off
    head_warmup: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in ("task", "class"):
            raise ValueError(f"scenario must be 'task' or 'class', got {self.scenario!r}")
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"TrainConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.lr_factor > 1:
            raise ValueError(f"TrainConfig.lr_factor must be > 1, got {self.lr_factor}")
        for c in self.conv:
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ValueError("TrainConfig.conv must list positive channel counts, "
                                 f"got {self.conv!r}")
        w = self.head_warmup
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise ValueError(f"TrainConfig.head_warmup must be an int >= 0, got {w!r}")
        if w and self.scenario == "class":
            raise ValueError("TrainConfig.head_warmup needs one head per task; "
                             "scenario='class' trains one shared head")


def make_strategy(method: str, hyperparameters: Mapping[str, Any] | None = None,
                  seed: int = 0) -> Strategy:
    """Build a strategy by name, checking its hyperparameters before any training."""
    hp = dict(hyperparameters or {})
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    strength = METHODS[method]
    if strength is not None:
        if strength not in hp:
            got = f" (got {', '.join(map(repr, sorted(hp)))})" if hp else ""
            raise ValueError(f"method {method!r} needs the hyperparameter {strength!r}{got}")
        check_strength(f"{method} {strength}", hp[strength])
    try:
        if method == "finetune":
            _no_extra(method, hp, set())
            return FineTune()
        if method == "joint":
            _no_extra(method, hp, set())
            return Joint()
        if method == "l2":
            _no_extra(method, hp, {"lam"})
            return L2(hp["lam"])
        if method in ("ewc", "online-ewc"):
            _no_extra(method, hp, {"lam", "gamma", "empirical", "n_samples"})
            return EWC(online=method == "online-ewc", seed=seed, **hp)
        if method == "si":
            _no_extra(method, hp, {"c", "xi"})
            return SI(**hp)
        if method == "mas":
            _no_extra(method, hp, {"lam", "n_samples"})
            return MAS(seed=seed, **hp)
        lam = hp.pop("lam")
        if method == "nai-tc":
            fixed = set(hp) & set(NAI_TC_OPTIONS)
            if fixed:
                raise ValueError(f"method 'nai-tc' fixes {', '.join(sorted(fixed))}; "
                                 "use method 'nai' to set them")
            nai = NAI(lam, NAIOptions(**{**NAI_TC_OPTIONS, **NAI_TC_DEFAULTS, **hp}),
                      seed=seed)
            nai.name = "nai-tc"
            return nai
        return NAI(lam, NAIOptions(**hp), seed=seed)
    except TypeError as err:  # an unknown NAI option
        raise ValueError(f"bad hyperparameters for {method!r}: {err}") from None


def _no_extra(method: str, hp: Mapping[str, Any], allowed: set[str]) -> None:
    extra = set(hp) - allowed
    if extra:
        raise ValueError(
            f"method {method!r} has no hyperparameter(s) {', '.join(sorted(extra))}"
            + (f"; it takes {', '.join(sorted(allowed))}" if allowed else "")
        )


@dataclass
class RunResult:
    """One run: a method on one task order. Accuracies in %, tasks in training order."""

    benchmark: str
    method: str
    order: list[int]
    scenario: str
    hyperparameters: dict[str, Any]
    acc_matrix: list[list[float]]
    val_matrix: list[list[float]]
    init_acc: list[float]
    acc: float
    bwt: float
    forgetting: float
    fwt: float
    val_acc: float
    seconds: float
    seed: int
    epochs_run: list[int] = field(default_factory=list)
    #: NAI with ``task_weight="uncertainty"``: each task's u_t = mean p_y(1 − p_y), in
    #: training order (empty for every other method, and then left out of the JSON)
    task_uncertainty: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not out["task_uncertainty"]:
            del out["task_uncertainty"]
        return out


# ------------------------------------------------------------------------------ helpers


def _task_view(task, scenario: str) -> dict[str, Tensor]:
    if scenario == "class":
        return {"x_train": task.x_train, "y_train": task.yg_train, "x_val": task.x_val,
                "y_val": task.yg_val, "x_test": task.x_test, "y_test": task.yg_test}
    return {"x_train": task.x_train, "y_train": task.y_train, "x_val": task.x_val,
            "y_val": task.y_val, "x_test": task.x_test, "y_test": task.y_test}


@torch.no_grad()
def _accuracy(model: MultiHeadNet, x: Tensor, y: Tensor, head: int, bs: int) -> float:
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, x.shape[0], bs):
        correct += int((model(x[s:s + bs], task=head).argmax(1) == y[s:s + bs]).sum())
    model.train(was)
    return 100.0 * correct / max(x.shape[0], 1)


@torch.no_grad()
def _loss(model: MultiHeadNet, x: Tensor, y: Tensor, head: Any, bs: int) -> float:
    was = model.training
    model.eval()
    total = 0.0
    for s in range(0, x.shape[0], bs):
        h = head[s:s + bs] if isinstance(head, Tensor) else head
        total += float(F.cross_entropy(model(x[s:s + bs], task=h), y[s:s + bs],
                                       reduction="sum"))
    model.train(was)
    return total / max(x.shape[0], 1)


def _config_key(config: TrainConfig) -> dict[str, Any]:
    # options added later are left out at their neutral value, so older checkpoints still match
    d = asdict(config)
    for name in ("dropout", "head_warmup"):
        if d[name] == 0:
            del d[name]
    if not d["conv"]:
        del d["conv"]
    return d


def _run_key(stream: TaskStream, method: str, hp: Mapping[str, Any], config: TrainConfig) -> str:
    blob = json.dumps({"benchmark": stream.benchmark, "order": list(stream.order),
                       "method": method, "hp": dict(hp), "config": _config_key(config),
                       "info": stream.info}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def build_model(stream: TaskStream, config: TrainConfig) -> MultiHeadNet:
    torch.manual_seed(config.seed)
    if config.scenario == "class":
        heads, shared = (stream.n_global_classes,), True
    else:
        heads, shared = stream.head_sizes, stream.shared_head
    if config.conv:
        return ContinualCNN(stream.n_inputs, config.conv, config.hidden, heads,
                            shared_head=shared, dropout=config.dropout)
    return ContinualMLP(stream.n_inputs, config.hidden, heads, shared_head=shared,
                        dropout=config.dropout)


# ------------------------------------------------------------------------------ the loop


def run_sequence(
    stream: TaskStream,
    method: str,
    hyperparameters: Mapping[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train ``method`` on the tasks of ``stream`` in order; return the accuracy matrices.

    Args:
        stream: the tasks in training order (:func:`~.streams.make_stream`).
        method: one of :data:`METHODS`.
        hyperparameters: the method's (``{"lam": 100}``, NAI options, ...).
        config: the training protocol.
        checkpoint: file to checkpoint to after every task and to resume from.
        progress: a tqdm bar over the optimisation steps of each task.
        log: called with one line per finished task.
    """
    config = config or TrainConfig()
    hp = dict(hyperparameters or {})
    strategy = make_strategy(method, hp, seed=config.seed)
    if config.scenario == "class" and stream.shared_head:
        raise ValueError(f"{stream.benchmark} has one shared head already; use scenario='task'")
    if config.head_warmup and stream.shared_head:
        raise ValueError(f"head_warmup needs one head per task; {stream.benchmark} has one "
                         "shared head")
    key = _run_key(stream, method, hp, config)
    model = build_model(stream, config)
    device = stream.tasks[0].x_train.device
    model.to(device)
    t_count = len(stream.tasks)
    views = [_task_view(t, config.scenario) for t in stream.tasks]
    heads = [0 if config.scenario == "class" else model.head_index(t.identity)
             for t in stream.tasks]
    bs_eval = config.eval_batch_size

    def row(split: str) -> list[float]:
        return [_accuracy(model, v[f"x_{split}"], v[f"y_{split}"], h, bs_eval)
                for v, h in zip(views, heads)]

    ckpt = Path(checkpoint) if checkpoint is not None else None
    done, r_test, r_val, epochs_run, seconds = 0, [], [], [], 0.0
    init_acc: list[float]
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state.get("key") != key:
            raise ValueError(
                f"checkpoint {ckpt} belongs to another run (benchmark, order, method, "
                "hyperparameters or training config differ); delete it or use another path"
            )
        model.load_state_dict(state["model"])
        strategy.load_state_dict(state["strategy"])
        done, r_test, r_val = state["done"], state["r_test"], state["r_val"]
        init_acc, epochs_run, seconds = state["init_acc"], state["epochs_run"], state["seconds"]
        if log and done < t_count:
            log(f"resuming {stream.benchmark} {method} order {list(stream.order)} after task "
                f"{done}/{t_count}")
    else:
        init_acc = row("test")

    for pos in range(done, t_count):
        t0 = time.perf_counter()
        task, view = stream.tasks[pos], views[pos]
        strategy.before_task(model, pos)
        if strategy.rehearse_all:
            x_pool = torch.cat([v["x_train"] for v in views[:pos + 1]])
            y_pool = torch.cat([v["y_train"] for v in views[:pos + 1]])
            h_pool = torch.cat([torch.full((v["x_train"].shape[0],), h, dtype=torch.long,
                                           device=device)
                                for v, h in zip(views[:pos + 1], heads[:pos + 1])])
            x_val = torch.cat([v["x_val"] for v in views[:pos + 1]])
            y_val = torch.cat([v["y_val"] for v in views[:pos + 1]])
            h_val: Any = torch.cat([torch.full((v["x_val"].shape[0],), h, dtype=torch.long,
                                               device=device)
                                    for v, h in zip(views[:pos + 1], heads[:pos + 1])])
        else:
            x_pool, y_pool, h_pool = view["x_train"], view["y_train"], None
            x_val, y_val, h_val = view["x_val"], view["y_val"], heads[pos]
        n_steps_examples = view["x_train"].shape[0]  # joint keeps the same step budget
        epochs = _train_task(model, strategy, x_pool, y_pool, h_pool, heads[pos], x_val, y_val,
                             h_val, n_steps_examples, config, pos, task.name, method,
                             t_count, ckpt, progress)
        strategy.after_task(model, TaskData(
            x=view["x_train"], y=view["y_train"],
            forward=lambda x, h=heads[pos]: model(x, task=h), head=heads[pos],
            identity=task.identity,
        ))
        r_test.append(row("test"))
        r_val.append(row("val"))
        epochs_run.append(epochs)
        seconds += time.perf_counter() - t0
        done = pos + 1
        if ckpt is not None:
            _atomic_save({"key": key, "model": model.state_dict(),
                          "strategy": strategy.state_dict(), "done": done, "r_test": r_test,
                          "r_val": r_val, "init_acc": init_acc, "epochs_run": epochs_run,
                          "seconds": seconds}, ckpt)
        if log:
            log(f"{stream.benchmark} {method} task {done}/{t_count} ({task.name}): "
                f"acc so far {sum(r_test[-1][:done]) / done:.2f} % "
                f"({time.perf_counter() - t0:.1f} s, {epochs} epochs)")

    # the test matrix restricted to the tasks seen: R is T x T, row i = after task i
    s = summarise(r_test, init_acc)
    s_val = summarise(r_val)
    return RunResult(
        benchmark=stream.benchmark, method=method, order=list(stream.order),
        scenario=config.scenario, hyperparameters=hp, acc_matrix=r_test, val_matrix=r_val,
        init_acc=init_acc, acc=s["acc"], bwt=s["bwt"], forgetting=s["forgetting"],
        fwt=s["fwt"], val_acc=s_val["acc"], seconds=seconds, seed=config.seed,
        epochs_run=epochs_run,
        task_uncertainty=list(getattr(strategy, "task_uncertainty", [])),
    )


def _warm_up_head(model: MultiHeadNet, x: Tensor, y: Tensor, head: int, config: TrainConfig,
                  pos: int) -> None:
    """Train task head ``head`` alone for ``config.head_warmup`` epochs, the trunk frozen.

    Linear probing before fine-tuning (Kumar et al., ICLR 2022): a fresh head's gradients
    carry no information about the task yet, and with it in place the first full steps move
    the shared trunk in directions the old tasks pay for. The trunk's features are computed
    without gradients, so neither the trunk nor the strategy's state sees these steps."""
    params = list(model.heads[head].parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + pos + 50_000)
    model.train()
    for _ in range(config.head_warmup):
        perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
        for s in range(0, x.shape[0], config.batch_size):
            idx = perm[s:s + config.batch_size]
            with torch.no_grad():
                h = model.trunk(x[idx].reshape(idx.shape[0], -1))
            loss = F.cross_entropy(model.heads[head](h), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _train_task(model, strategy, x_pool, y_pool, h_pool, head, x_val, y_val, h_val,
                n_examples, config, pos, name, method, t_count, ckpt, progress) -> int:
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    lr = config.lr
    gen = torch.Generator().manual_seed(config.seed * 100_003 + pos)
    if config.dropout > 0:
        # dropout masks come from the global generator: seeded per task, a run resumed from
        # its checkpoint draws the same masks as an uninterrupted one
        torch.manual_seed(config.seed * 100_003 + pos + 1)
    if config.head_warmup:
        _warm_up_head(model, x_pool if h_pool is None else x_pool[h_pool == head],
                      y_pool if h_pool is None else y_pool[h_pool == head], head, config, pos)
    best_loss, best_state, bad = math.inf, None, 0
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress,
               desc=f"{method} task {pos + 1}/{t_count}", leave=False)
    epochs_done = 0
    model.train()
    try:
        for epoch in range(config.epochs):
            perm = torch.randperm(x_pool.shape[0], generator=gen)[:n_examples]
            perm = perm.to(x_pool.device)
            for step in range(steps_per_epoch):
                idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
                h = h_pool[idx] if h_pool is not None else head
                loss = F.cross_entropy(model(x_pool[idx], task=h), y_pool[idx])
                pen = None
                opt.zero_grad(set_to_none=True)
                if torch.isfinite(loss):
                    loss.backward()
                    strategy.after_backward(model)
                    pen = strategy.penalty(model)
                if not torch.isfinite(loss) or (pen is not None and not torch.isfinite(pen)):
                    what = "loss" if not torch.isfinite(loss) else "penalty"
                    value = float(loss.detach()) if what == "loss" else float(pen.detach())
                    kept = (f"; the checkpoint of the last finished task is kept at {ckpt}"
                            if ckpt is not None and pos > 0 else "")
                    raise TrainingDiverged(
                        f"{method}: non-finite {what} ({value}) in task {pos + 1}/{t_count} "
                        f"({name}), epoch {epoch + 1}, step {step + 1}{kept}"
                    )
                if pen is not None:
                    pen.backward()
                opt.step()
                strategy.after_step(model)
                bar.update(1)
            epochs_done = epoch + 1
            val = _loss(model, x_val, y_val, h_val, config.eval_batch_size)
            if val < best_loss - 1e-6:
                best_loss, bad = val, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= config.patience:
                    lr /= config.lr_factor
                    bad = 0
                    if lr < config.min_lr:
                        break
                    for g in opt.param_groups:
                        g["lr"] = lr
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return epochs_done
