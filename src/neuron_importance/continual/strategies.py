"""Continual-learning strategies behind one small interface.

A strategy is told what happens in the one training loop of :mod:`.trainer`::

    before_task(model, task)        a new task starts
    (task loss).backward()
    after_backward(model)           p.grad holds the gradient of the task loss only (SI uses it)
    penalty(model) -> Tensor|None   added to the loss and back-propagated
    optimizer.step(); after_step(model)
    after_task(model, data)         the task is finished: compute importances, move the anchor

``data`` is a :class:`TaskData`: the finished task's training inputs and labels and a
``forward(x)`` giving the logits of that task's head. Only the *shared* parameters (the trunk,
and the head when it is shared) are regularised; task heads are trained on their own task
only (``MultiHeadNet.shared_named_parameters``).

The baselines and their exact forms (``../shared/docs/methods/continual-learning.md`` §2):

* :class:`FineTune`: no penalty (lower bound).
* :class:`Joint`: the trainer rehearses every task seen so far (upper bound); no penalty.
* :class:`L2`: ``(λ/2) Σ (θ − θ*)²`` to the previous task's weights.
* :class:`EWC` (Kirkpatrick et al. 2017): ``(λ/2) Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})²`` with one
  anchor per task and the Fisher ``F = E_x E_{y∼p_θ(y|x)} [(∂ log p(y|x)/∂θ)²]`` from
  per-example gradients (``empirical=True`` uses the true labels). ``online=True`` is online
  EWC (Schwarz et al. 2018): one anchor, ``F ← γ F + F_new``.
* :class:`SI` (Zenke et al. 2017): ``ω_k −= g_k Δθ_k`` every step (g: task-loss gradient),
  ``Ω_k += ω_k / (Δ_k² + ξ)`` after each task, penalty ``c Σ Ω_k (θ_k − θ*_k)²``.
* :class:`MAS` (Aljundi et al. 2018): ``Ω = (1/N) Σ_x |∂ ‖F(x)‖₂² / ∂θ|`` (per example,
  unlabelled), summed over tasks, penalty ``λ Σ Ω (θ − θ*)²``.

The constant factors (½ or not) follow each paper; λ is tuned per method, so they only shift
the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .models import MultiHeadNet

__all__ = [
    "EWC",
    "L2",
    "MAS",
    "SI",
    "FineTune",
    "Joint",
    "Strategy",
    "TaskData",
    "check_strength",
    "per_example_grads",
]


@dataclass
class TaskData:
    """What a strategy may use of a finished task."""

    x: Tensor
    y: Tensor
    forward: Callable[[Tensor], Tensor]
    head: int
    identity: int


def check_strength(name: str, value: float) -> float:
    """λ-like hyperparameters must be finite and non-negative (checked before any training)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def _shared(model: nn.Module) -> dict[str, nn.Parameter]:
    if isinstance(model, MultiHeadNet):
        return dict(model.shared_named_parameters())
    return dict(model.named_parameters())


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: p.detach().clone() for k, p in _shared(model).items()}


def per_example_grads(
    model: nn.Module,
    loss_of_output: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    head: int,
    *,
    chunk: int = 256,
    reduce: Callable[[Tensor], Tensor] = torch.square,
) -> dict[str, Tensor]:
    """``Σ_x reduce(∂ loss(f(x), y) / ∂θ)`` over examples, for the shared parameters.

    ``loss_of_output(out, y)`` is the loss of one example (``out`` 1-D). ``reduce`` must be
    ``torch.square`` or ``torch.abs`` (or another function with ``reduce(ab) =
    reduce(a)·reduce(b)``). The sums are exact per example, not the square of a mini-batch
    gradient (a common shortcut that underestimates the Fisher by the batch size):

    * when every shared parameter belongs to an ``nn.Linear``, the per-example weight gradient
      is the outer product ``δ_n a_nᵀ`` of the output gradient and the input, so
      ``Σ_n reduce(δ_n a_nᵀ) = reduce(δ)ᵀ reduce(a)``: one forward and backward per chunk
      (Goodfellow 2015's trick);
    * otherwise ``torch.func.vmap(grad(...))`` per chunk.
    """
    shared = _shared(model)
    linears = {
        name: mod for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and f"{name}.weight" in shared
    }
    covered = {f"{n}.{p}" for n, m in linears.items() for p in ("weight", "bias")
               if getattr(m, p) is not None}
    was_training = model.training
    model.eval()
    try:
        if covered == set(shared):
            return _linear_sums(model, linears, loss_of_output, x, y, head, chunk, reduce)
        return _vmap_sums(model, shared, loss_of_output, x, y, head, chunk, reduce)
    finally:
        model.train(was_training)


def _linear_sums(model, linears, loss_of_output, x, y, head, chunk, reduce):
    acts: dict[str, Tensor] = {}
    outs: dict[str, Tensor] = {}

    def hook(name: str):
        def save(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            acts[name] = inputs[0].detach()
            outs[name] = out
        return save

    handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
    total: dict[str, Tensor] = {}
    per_example_loss = vmap(loss_of_output)
    try:
        for s in range(0, x.shape[0], chunk):
            with torch.enable_grad():
                out = model(x[s:s + chunk], task=head)
                loss = per_example_loss(out, y[s:s + chunk]).sum()
                names = list(outs)
                deltas = torch.autograd.grad(loss, [outs[n] for n in names])
            for n, d in zip(names, deltas):
                rd = reduce(d.detach())
                parts = {f"{n}.weight": rd.T @ reduce(acts[n])}
                if linears[n].bias is not None:
                    parts[f"{n}.bias"] = rd.sum(0)
                for k, v in parts.items():
                    total[k] = total[k] + v if k in total else v
            acts.clear()
            outs.clear()
    finally:
        for h in handles:
            h.remove()
    return total


def _vmap_sums(model, shared, loss_of_output, x, y, head, chunk, reduce):
    params = {k: p.detach() for k, p in shared.items()}

    def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, p, (xi.unsqueeze(0),), {"task": head}, strict=False)
        return loss_of_output(out[0], yi)

    g = vmap(grad(one), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    # torch.func.grad differentiates even under no_grad; no_grad keeps the model's own
    # (non-shared, e.g. head) parameters from recording a graph into the result
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            grads = g(params, x[s:s + chunk], y[s:s + chunk])
            for k, v in grads.items():
                total[k] += reduce(v).sum(0)
    return total


class Strategy:
    """Base class: no penalty. Subclasses override the hooks they need."""

    name = "base"
    #: the trainer rehearses every seen task when True
    rehearse_all = False

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def before_task(self, model: nn.Module, position: int) -> None:
        pass

    def after_backward(self, model: nn.Module) -> None:
        pass

    def penalty(self, model: nn.Module) -> Tensor | None:
        return None

    def after_step(self, model: nn.Module) -> None:
        pass

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FineTune(Strategy):
    """Plain sequential training: the lower bound."""

    name = "finetune"


class Joint(Strategy):
    """Rehearsal of all tasks seen so far (the trainer mixes them): the upper bound."""

    name = "joint"
    rehearse_all = True


class _Quadratic(Strategy):
    """``scale · λ · Σ Ω (θ − θ*)²`` over the shared parameters, one anchor."""

    scale = 0.5

    def __init__(self, lam: float) -> None:
        self.lam = check_strength(f"{self.name} lambda", lam)
        self.omega: dict[str, Tensor] = {}
        self.anchor: dict[str, Tensor] = {}

    def hyperparameters(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def penalty(self, model: nn.Module) -> Tensor | None:
        if not self.anchor or self.lam == 0:
            return None
        total: Tensor | None = None
        for k, p in _shared(model).items():
            term = (self.omega[k] * (p - self.anchor[k]).square()).sum()
            total = term if total is None else total + term
        return None if total is None else self.scale * self.lam * total

    def state_dict(self) -> dict[str, Any]:
        return {"omega": self.omega, "anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.omega = dict(state["omega"])
        self.anchor = dict(state["anchor"])


class L2(_Quadratic):
    """``(λ/2) Σ (θ − θ*)²`` to the weights after the previous task."""

    name = "l2"

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        self.anchor = _snapshot(model)
        self.omega = {k: torch.ones_like(v) for k, v in self.anchor.items()}


class EWC(Strategy):
    """Elastic weight consolidation; ``online=True`` for online EWC (one decayed Fisher)."""

    def __init__(
        self,
        lam: float,
        *,
        online: bool = False,
        gamma: float = 1.0,
        empirical: bool = False,
        n_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        self.lam = check_strength("ewc lambda", lam)
        self.gamma = check_strength("ewc gamma", gamma)
        if n_samples is not None and n_samples < 1:
            raise ValueError(f"ewc n_samples must be positive, got {n_samples}")
        self.online, self.empirical, self.n_samples, self.seed = online, empirical, n_samples, seed
        self.name = "online-ewc" if online else "ewc"
        #: (anchor, fisher) per finished task; one entry when online
        self.terms: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def hyperparameters(self) -> dict[str, Any]:
        hp = {"lam": self.lam, "empirical": self.empirical, "n_samples": self.n_samples}
        if self.online:
            hp["gamma"] = self.gamma
        return hp

    def fisher(self, model: nn.Module, data: TaskData) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(self.seed + 7919 * data.identity)
        n = data.x.shape[0] if self.n_samples is None else min(self.n_samples, data.x.shape[0])
        idx = torch.randperm(data.x.shape[0], generator=g)[:n]
        x, y = data.x[idx], data.y[idx]
        with torch.no_grad():
            logits = data.forward(x)
        if not self.empirical:
            # the true Fisher samples y from the model's own predictive distribution
            # drawn on the CPU with the seeded CPU generator, so a run on a GPU samples the
            # same labels as on the CPU (a CPU generator cannot drive a CUDA multinomial)
            probs = torch.softmax(logits.detach().double().cpu(), -1)
            y = torch.multinomial(probs, 1, generator=g).squeeze(1)
        y = y.to(x.device)

        def nll(out: Tensor, yi: Tensor) -> Tensor:
            return -torch.log_softmax(out, -1).gather(0, yi.reshape(1)).squeeze(0)

        total = per_example_grads(model, nll, x, y, data.head)
        return {k: v / n for k, v in total.items()}

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        f_new = self.fisher(model, data)
        anchor = _snapshot(model)
        if self.online and self.terms:
            _, f_old = self.terms[0]
            self.terms = [(anchor, {k: self.gamma * f_old[k] + f_new[k] for k in f_new})]
        else:
            self.terms.append((anchor, f_new))

    def penalty(self, model: nn.Module) -> Tensor | None:
        if not self.terms or self.lam == 0:
            return None
        params = _shared(model)
        total = sum(
            (f[k] * (params[k] - a[k]).square()).sum() for a, f in self.terms for k in params
        )
        return 0.5 * self.lam * total

    def state_dict(self) -> dict[str, Any]:
        return {"terms": self.terms}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.terms = list(state["terms"])


class SI(_Quadratic):
    """Synaptic intelligence: importance from each parameter's contribution to the loss drop."""

    name = "si"
    scale = 1.0

    def __init__(self, c: float, *, xi: float = 0.1) -> None:
        super().__init__(c)
        self.xi = check_strength("si xi", xi)
        if self.xi == 0:
            raise ValueError("si xi must be > 0 (it damps the division by the squared change)")
        self._omega_path: dict[str, Tensor] = {}
        self._start: dict[str, Tensor] = {}
        self._prev: dict[str, Tensor] = {}
        self._grad: dict[str, Tensor] = {}

    def hyperparameters(self) -> dict[str, Any]:
        return {"c": self.lam, "xi": self.xi}

    def before_task(self, model: nn.Module, position: int) -> None:
        self._start = _snapshot(model)
        self._omega_path = {k: torch.zeros_like(v) for k, v in self._start.items()}

    def after_backward(self, model: nn.Module) -> None:
        params = _shared(model)
        self._grad = {
            k: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for k, p in params.items()
        }
        self._prev = {k: p.detach().clone() for k, p in params.items()}

    def after_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            for k, p in _shared(model).items():
                self._omega_path[k] -= self._grad[k] * (p.detach() - self._prev[k])

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        end = _snapshot(model)
        for k, v in end.items():
            delta = v - self._start[k]
            new = self._omega_path[k] / (delta.square() + self.xi)
            # ω can be slightly negative where noise moved a parameter uphill: clip at 0 so
            # the penalty stays a penalty
            new = new.clamp_min(0)
            self.omega[k] = self.omega[k] + new if k in self.omega else new
        self.anchor = end

    def state_dict(self) -> dict[str, Any]:
        return {"omega": self.omega, "anchor": self.anchor}


class MAS(_Quadratic):
    """Memory-aware synapses: sensitivity of the squared output norm, no labels needed."""

    name = "mas"
    scale = 1.0

    def __init__(self, lam: float, *, n_samples: int | None = None, seed: int = 0) -> None:
        super().__init__(lam)
        if n_samples is not None and n_samples < 1:
            raise ValueError(f"mas n_samples must be positive, got {n_samples}")
        self.n_samples, self.seed = n_samples, seed

    def hyperparameters(self) -> dict[str, Any]:
        return {"lam": self.lam, "n_samples": self.n_samples}

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        g = torch.Generator().manual_seed(self.seed + 7919 * data.identity)
        n = data.x.shape[0] if self.n_samples is None else min(self.n_samples, data.x.shape[0])
        idx = torch.randperm(data.x.shape[0], generator=g)[:n]

        def sq_norm(out: Tensor, _y: Tensor) -> Tensor:
            return out.square().sum()

        total = per_example_grads(
            model, sq_norm, data.x[idx], data.y[idx], data.head, reduce=torch.abs
        )
        for k, v in total.items():
            new = v / n
            self.omega[k] = self.omega[k] + new if k in self.omega else new
        self.anchor = _snapshot(model)
