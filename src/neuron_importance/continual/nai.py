"""NAI: a continual-learning regulariser with weight importance from neuron activation importance.

Kim & Lee, "Continual Learning with Neuron Activation Importance" (arXiv 2107.12657, 2021).
The paper's exact formulas were not available; this is the implementable design of
``../shared/docs/methods/continual-learning.md`` §1, every choice a switch of
:class:`NAIOptions`::

    raw      m_i^l = (1/|D_t|) Σ_{x∈D_t} s(h_i^l(x))              (activation statistics)
    norm     I_i^l = norm_l(m^l)_i                               (per layer)
    weights  Ω_new[W^l_ij] = map(I_i^l, I_j^{l−1});  Ω_new[b^l_i] = I_i^l
    accum    Ω ← acc(Ω, Ω_new)                                   (after each task)
    loss     L(θ) = CE_t(θ) + (λ/2) Σ Ω ⊙ (θ − θ*)²              (penalty="quad")
             L(θ) = CE_t(θ) + λ Σ_n Ω_n ‖θ_n − θ*_n‖₂            (penalty="group", per node)

The activation statistics come from :func:`neuron_importance.activation_statistics` (one
forward pass over the task's training data per layer). ``source="conductance"`` replaces the
raw statistic by the mean absolute Total Conductance of each neuron for the true class
(:class:`neuron_importance.TotalConductance`, Shrikumar et al. 2018 / Dhamdhere et al. 2018),
the importance of a neuron *for the prediction* instead of its mere activity. The study's
method ``nai-tc`` is NAI with ``source="conductance"``, ``conductance_stat="sq"`` (E[c_i²]),
``n_samples=2000`` and, by default, ``conductance_target="centred"``: on Split MNIST it keeps
NAI's low forgetting and learns new tasks nearly as well as EWC, because units whose activity
the finished task's head does not read get Ω ≈ 0.

Edge cases (notes §1): with ``input_importance="none"`` the inputs have ``I⁰ = 0`` and
first-layer weights take ``I_i^1`` whatever ``map``; with a shared head the output units'
importance is the mean logit clipped at 0; task heads are not regularised.

**Defaults differ from the notes' ★ in three switches**, chosen by experiment (validation
accuracy; ``docs/continual.md``): ``map="prod"`` with ``input_importance="activation"``
(Ω_ij = I_i·I_j, the inputs counted as units). With the notes' ``map="max"``, I⁰ = 0, every
incoming weight of an active unit is held about equally, and the new task loses plasticity (the
last task of Split MNIST stayed 1.5–3 points below fine-tuning for every λ from 0.01 to 1000);
the product concentrates Ω on weights between two active units. ``stat="sq"`` (second moments,
I_i ∝ E[h_i²] and I⁰_j ∝ E[x_j²]) instead of the mean: then Ω_ij = E[h_i²]·E[x_j²] has the form of
the Kronecker-factored Fisher E[δ_i²]·E[a_j²] of a linear layer (Martens & Grosse 2015), with the
unit's activation moment in place of its output-gradient moment δ_i², and it was better than
``mean`` at its best λ on both Split MNIST and a 5-task Permuted MNIST proxy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..neurons.activation import activation_statistics
from .models import MultiHeadNet
from .strategies import Strategy, TaskData, check_strength

__all__ = ["NAI", "NAIOptions", "trunk_unit_layers"]

_STATS = ("mean", "abs", "sq", "nonzero", "pre", "var")
_NORMS = ("none", "mean", "max", "zscore", "rank", "softmax", "network", "task")
_MAPS = ("out", "max", "mean", "min", "prod", "joint")
_ACCS = ("max", "decay", "mean", "sum")
_PENALTIES = ("quad", "group")
_SOURCES = ("activation", "conductance")


@dataclass(frozen=True)
class NAIOptions:
    """The switches of the NAI regulariser (defaults chosen by the ablation in the report).

    Attributes:
        stat: ``mean`` E[h]; ``abs`` E|h|; ``sq`` E[h²]; ``var`` Var[h] = E[h²] − E[h]² (a
            unit that is equally on for every example of the task carries no information
            about it; the inputs then take E|x|); ``nonzero`` mean over h > 0; ``pre`` E|z|
            of the pre-activation z.
        collect_mode: ``eval`` (dropout off) or ``train``.
        norm: per-layer normalisation: ``none``; ``mean`` m/mean(m); ``max`` m/max(m);
            ``zscore`` max(0, (m−μ)/σ); ``rank`` rank/(n−1); ``softmax`` n·softmax(m/τ);
            or one scale per task for the whole trunk, ``network``: m^l / d with d the mean
            over the trunk's layers of mean(m^l), so that every task's importances have the
            same overall size (as with ``mean``) but the layers' *unit* importances keep
            their ratios (a layer of few units, whose conductances share the same output
            change, keeps its larger per-unit importance; ``mean`` sets every layer to 1). A
            weight between two hidden layers multiplies two of them (``map="prod"``), so its
            Ω is divided by d², a first-layer weight's by d: the weights' layer ratios do
            change (docs/continual.md, session 19). The inputs' statistic, a different
            quantity, is normalised by its own mean, and a shared head's uniform importances
            are left as they are. ``task``: nothing is normalised per layer, and the task's
            weight importances Ω of the trunk are divided by one number, the mean over its
            weight tensors of mean(Ω); it needs ``input_side="activation"`` or
            ``map="joint"``, so that every weight's Ω has one conductance factor and scales
            alike with the task's logits.
        map: neuron → weight importance for ``W_ij`` (unit i of layer l, unit j of layer
            l−1): ``out`` I_i; ``max``/``mean``/``min`` of (I_i, I_j); ``prod`` I_i·I_j;
            ``joint`` E_n[s_i(n)·a_j(n)²], the per-example product of unit i's importance
            s_i(n) (its conductance statistic on example n) and the square of the input a_j(n)
            that the weight multiplies, normalised to mean 1 per layer (for a conv kernel
            entry, the mean over the output positions p of s_o(n, p)·a_i(n, p + (u, v))²).
            ``prod`` is its value when s_i and a_j² are uncorrelated; ``joint`` keeps which
            inputs are active *on the examples where the unit matters*, as the Fisher
            E[δ_i² a_j²] of EWC does. Needs ``source="conductance"`` and ``norm="mean"``, or
            ``norm="task"``: each layer's Ω_ij = E_n[s_i(n)·a_j(n)²] is then left as it is
            and the task's Ω divided by one number, or ``norm="none"``: left as it is, with
            the task's own scale (session 20); a shared head keeps ``prod``.
        acc: accumulation over tasks: ``max``; ``decay`` ηΩ + Ω_new; ``mean`` running mean;
            ``sum``.
        eta: the decay factor of ``acc="decay"``.
        penalty: ``quad`` (λ/2)ΣΩ(θ−θ*)², or ``group`` λΣ_n Ω_n‖θ_n − θ*_n‖₂ per node.
        tau: temperature of ``norm="softmax"``.
        source: ``activation`` (the statistic above) or ``conductance`` (the mean of
            ``conductance_stat`` of each unit's Total Conductance for the true class; ``stat``
            then only chooses the inputs' statistic).
        conductance_stat: ``abs`` E|c_i| or ``sq`` E[c_i²] of the conductances c_i
            (``source="conductance"`` only).
        conductance_target: what the conductances explain (``source="conductance"`` only):
            ``logit``, the true class's logit z_y; or ``centred``, z_y − mean_k z_k, the
            DeepLIFT paper's adjustment for softmax outputs (Shrikumar et al. 2017, §3.6). A
            softmax head is blind to a shift of every logit by the same amount, so the part of
            a unit's conductance that moves all logits together is no importance for the
            task's predictions; ``centred`` leaves it out (for a 2-way head it is half the
            margin z_y − z_other); or ``logprob``, log p_y = log softmax(z)_y, the
            log-likelihood that the Fisher of EWC differentiates (session 21). Its
            conductances sum to log p_y(x) − log p_y(baseline), at most the baseline's
            surprise −log p_y(baseline), where a logit's grow with the example's margin. It
            was meant to stop easy pairs (large activations and margins) outweighing a hard
            one; measured on Split MNIST's CNN it barely does (8 vs 9 over 0 vs 1 on the fc
            layer 1.5× against the logit's 1.3×, the Fisher's 7.8×; ``task_scale.txt``).
        n_samples: examples of the task used for the statistics (``None``: all).
        conductance_steps: ``n_steps`` of Total Conductance.
        reinit: fraction ρ of the least important units of each hidden layer whose incoming
            weights are re-drawn (and outgoing weights zeroed) after each task; 0 = off.
        input_importance: ``none`` (the notes' I⁰ = 0: first-layer weights take I_i) or
            ``activation``: the inputs are units too, with I⁰_j = norm(E[x_j²]) for
            ``stat="sq"`` and norm(E|x_j|) otherwise, so ``map`` applies to the first layer
            as well (with ``prod``, Ω_ij = I_i·I⁰_j resembles the a_j² factor of the Fisher).
        downstream: ``none``, or ``weights``: each hidden unit's importance is multiplied by
            how strongly it reaches the important units above it, top-down from the finished
            task's head, I_i^l ← norm(I_i^l · Σ_k (W^{l+1}_ki)² I_k^{l+1}) with I = 1 for the
            head's outputs: a label- and gradient-free stand-in for the E[δ_i²] factor of the
            Fisher, so that an active unit the old heads barely read is left free.
        floor: a uniform share added to each layer's weight (and bias) importances before
            accumulation, Ω ← Ω + floor · mean(Ω) per tensor: a plain L2 term under the
            importance-weighted one, so that weights whose importance is near zero (E[c²]
            and E[h²] are heavy-tailed) are not left free to drift; 0 = off. Default 0.003
            (session 14, docs/continual.md): tuned jointly with λ on order-0 validation, a
            floor above 0 won on all five benchmark × method grids (NAI and NAI-TC on Split
            MNIST and Split Fashion-MNIST, NAI on Permuted MNIST), 0.003 was the best value in
            four of them, and over all orders it lowered forgetting on each.
        conductance_weight: how the examples are weighted in the conductance statistic
            (``source="conductance"`` only): ``uniform``, or ``fisher``, each example by
            p_y(1 − p_y) of the finished task's softmax (normalised to mean 1), the weight the
            Fisher information gives it: the importance then comes from the examples near the
            decision boundary, the ones a small drift flips. ``fisher-raw``: the same weights
            not normalised, so that, as in EWC's Fisher, a task the network is less sure of
            (a hard pair such as 8 vs 9) gets a larger Ω than an easy one. It changes Ω only
            where no normalisation removes the task's scale: ``norm="none"``, best with
            ``input_side="activation"`` (one weighted conductance factor in every weight's Ω;
            with importances on both sides a hidden weight's Ω takes the weights' scale twice).
        head_importance: a *shared* output layer's unit importances: ``uniform`` (every
            output unit matters to every task: I = 1) or ``logit`` (the notes' mean logit
            clipped at 0, which leaves most of a 10-way head unprotected).
        head_scale: a factor on a *shared* head's importances (its weights' and biases' Ω,
            and its node importance), so that one λ can hold the trunk loosely and the head
            that every task reads hard, with every task's trunk Ω at the same scale
            (``norm="mean"``); 1 = off. ``norm="max"`` makes that balance too, but through the
            maximum of each task's heavy-tailed moments, which differs from task to task
            (session 15, docs/continual.md). Task heads are not regularised, so it does
            nothing without a shared head.
        input_side: what ``map`` pairs with a weight's output unit: ``importance``, the
            input unit's importance I_j; or ``activation``, the input unit's activation
            moment E[a_j²] (``stat``'s moment; E[x_j²] for the inputs), so that Ω_ij =
            E[c_i²]·E[a_j²] has the two factors of the Fisher E[δ_i²]·E[a_j²] (Martens &
            Grosse 2015) in every layer (``source="conductance"`` only).
        conv_units: what a unit of a ``Conv2d`` layer is. ``channel``: each output channel
            (its statistic averaged over its positions; a kernel's Ω is the same over its
            k×k entries). ``position``: each (channel, row, column) of the feature map, as the
            units of a ``Linear`` layer; a kernel entry (o, i, u, v) is used at every output
            position p, so its Ω is the mean over p of ``map(I_out[o, p], I_in[i, p + (u, v)])``,
            and the ``Linear`` after ``Flatten`` reads each position's own importance. The
            importance map of a layer's inputs is average-pooled to the size the layer reads
            when a pooling layer lies between (2×2 max-pool: the mean of each window).
        anchor: where the penalty pulls each weight. ``last``: to the weights at the end of
            the last task, θ*_T, with the accumulated Ω (as SI and MAS). ``task``: every task
            keeps its own anchor, as EWC does, L = (λ/2) Σ_t a_t Ω_t ⊙ (θ − θ*_t)², with a_t
            the accumulation's weight of task t (η^{T−t} for ``decay``, 1 for ``sum``, 1/T for
            ``mean``). With a single anchor a weight may drift a little on every task, and the
            drifts add up for a task learned early; with its own anchor a task pulls its
            weights back to where it left them whatever came after. The sum of quadratics is
            one quadratic, Ω_acc ⊙ (θ − θ̄)² + const with Ω_acc = Σ a_t Ω_t and
            θ̄ = Σ a_t Ω_t θ*_t / Ω_acc, so the memory stays two tensors per parameter (the
            penalty's value leaves the constant out; its gradient is exact). Needs a linear
            accumulation (not ``acc="max"``) and ``penalty="quad"``.
        joint_positions: how ``map="joint"`` combines a conv kernel entry's uses over the
            output positions: ``mean`` (above) or ``sum``. With ``norm="mean"`` the two are
            the same (a constant per layer). With ``norm="task"`` or ``"none"`` the mean makes
            a conv layer's Ω a per-position quantity, P times (P output positions) smaller
            than its sum over the positions where the kernel is used, while a channel's
            conductance and EWC's Fisher sum over positions, so the conv layers are held P
            times too loosely against the fully connected ones (``omega_concentration.txt``,
            session 20). ``map="joint"`` only.
        task_weight: a factor on each finished task's weight importances Ω_t (the node
            importances are left as they are): ``none`` 1, or ``uncertainty``
            u_t = E_n[p_y(n)(1 − p_y(n))], the mean Bernoulli variance of the task's softmax
            on the examples its importance is measured on (session 21). The Fisher of EWC
            carries this factor (for a logistic output it is E[p(1−p)‖∂z/∂θ‖²]), so it holds
            a task the network is unsure of (8 vs 9, u 7× that of 0 vs 1) harder than an easy
            one, which NAI's per-task normalisation (``norm="network"``, ``"task"`` or the
            per-layer norms) makes all alike and a conductance (its activation factor) does
            not restore (``task_scale.txt``). After a full task's training (10 epochs) u_t is
            1e-5–1e-3: it still ranks the tasks as the Fisher does (8 vs 9 7× 0 vs 1), while the
            Fisher's own span grows to four orders of magnitude (``task_scale_10ep.txt``), so λ
            grows to match. On Split MNIST's CNN (session 23, docs/continual.md) it came within
            0.01 of EWC's mean on one draw of orders (λ 300 frozen), but on the other order 0's
            validation was flat from λ 11 to 300, the study froze 33 and lost 8 vs 9 learned
            first (read with the one-SE rule it froze 300 and stayed 0.07 below EWC). Off by
            default.
        task_weight_power: γ in the factor u_t^γ of ``task_weight="uncertainty"`` (default 1,
            the factor above). The Fisher's across-task scale after a full task's training is
            about u_t^2.5 times NAI's (slope of log(Fisher / NAI Ω) on log u_t over the five
            Split MNIST tasks, 2.4–2.6 for every trunk layer, ``task_scale_10ep.txt``): with
            γ 1 an easy task (0 vs 1) is held about 30× harder against a hard one (2 vs 3)
            than under EWC, which leaves less room to learn a hard pair that comes later (the
            intransigence on 8 vs 9 of session 24). γ > 1 spreads the tasks' weights as the
            Fisher does; λ moves by about u^(1 − γ): on Split MNIST's CNN from 300 (γ 1) to 9e6
            (γ 2.5), u ≈ 1e-3 as NAI measures it after training under the penalty. Measured
            there (session 25, 5 seeds): on one draw of orders it learns 8 vs 9 better and
            comes within 0.012 of EWC's mean; on the other it loses an easy pair learned first
            (4 vs 5), held too loosely, and falls 0.08 behind. Caveat (session 26): in a
            sequence u_t grows with the penalty's pressure on the task (a task learned first
            is measured free of it; later tasks' u rise with λ), so the fit on tasks trained
            alone overstates γ: within single sequences EWC's Fisher spreads the tasks as
            u_t^1.1 to u_t^2.1 (three measured), and on Split Fashion-MNIST γ 1.7 (its
            task-alone fit) fell 0.18 behind γ 1 while γ 1.3 only tied it. Place λ at
            λ₁ · ū^(1 − γ), ū the geometric mean of a γ-1 run's ``task_uncertainty``. Needs
            ``task_weight="uncertainty"``; off (1) by default.
    """

    stat: str = "sq"
    collect_mode: str = "eval"
    norm: str = "mean"
    map: str = "prod"
    acc: str = "decay"
    eta: float = 0.9
    penalty: str = "quad"
    tau: float = 1.0
    source: str = "activation"
    n_samples: int | None = None
    conductance_steps: int = 16
    reinit: float = 0.0
    input_importance: str = "activation"
    head_importance: str = "uniform"
    downstream: str = "none"
    conductance_stat: str = "abs"
    conductance_target: str = "logit"
    floor: float = 0.003
    head_scale: float = 1.0
    conductance_weight: str = "uniform"
    conv_units: str = "channel"
    input_side: str = "importance"
    anchor: str = "last"
    joint_positions: str = "mean"
    task_weight: str = "none"
    task_weight_power: float = 1.0

    def __post_init__(self) -> None:
        for field_name, allowed in (
            ("stat", _STATS), ("norm", _NORMS), ("map", _MAPS), ("acc", _ACCS),
            ("penalty", _PENALTIES), ("source", _SOURCES), ("collect_mode", ("eval", "train")),
            ("input_importance", ("none", "activation")),
            ("head_importance", ("uniform", "logit")),
            ("downstream", ("none", "weights")),
            ("conductance_stat", ("abs", "sq")),
            ("conductance_target", ("logit", "centred", "logprob")),
            ("conductance_weight", ("uniform", "fisher", "fisher-raw")),
            ("conv_units", ("channel", "position")),
            ("input_side", ("importance", "activation")),
            ("anchor", ("last", "task")),
            ("joint_positions", ("mean", "sum")),
            ("task_weight", ("none", "uncertainty")),
        ):
            value = getattr(self, field_name)
            if value not in allowed:
                raise ValueError(
                    f"NAI option {field_name}={value!r} is not one of {', '.join(allowed)}"
                )
        check_strength("NAI eta", self.eta)
        check_strength("NAI floor", self.floor)
        check_strength("NAI head_scale", self.head_scale)
        if not (math.isfinite(self.task_weight_power) and self.task_weight_power > 0):
            raise ValueError(
                f"NAI option task_weight_power must be finite and > 0, got "
                f"{self.task_weight_power}"
            )
        if self.task_weight_power != 1.0 and self.task_weight != "uncertainty":
            raise ValueError(
                f"NAI option task_weight_power={self.task_weight_power} needs "
                f"task_weight='uncertainty', got task_weight={self.task_weight!r}"
            )
        if not self.tau > 0:
            raise ValueError(f"NAI option tau must be > 0, got {self.tau}")
        if not 0.0 <= self.reinit < 1.0:
            raise ValueError(f"NAI option reinit must be in [0, 1), got {self.reinit}")
        if self.norm in ("network", "task") and self.downstream != "none":
            raise ValueError("NAI option downstream='weights' renormalises each layer; it "
                             "needs a per-layer norm, not norm='network' or 'task'")
        if self.input_side == "activation" and self.source != "conductance":
            raise ValueError("NAI option input_side='activation' needs source='conductance' "
                             "(with activation statistics the importances are the moments)")
        if self.norm == "task" and self.input_side != "activation" and self.map != "joint":
            raise ValueError("NAI option norm='task' needs input_side='activation' or "
                             "map='joint' (with importances on both sides a hidden weight's Ω "
                             "scales as the square of a first-layer weight's)")
        if self.map == "joint" and (self.source != "conductance"
                                    or self.norm not in ("mean", "task", "none")):
            raise ValueError("NAI option map='joint' needs source='conductance' and "
                             f"norm='mean', 'task' or 'none' (got source={self.source!r}, "
                             f"norm={self.norm!r})")
        if self.joint_positions != "mean" and self.map != "joint":
            raise ValueError("NAI option joint_positions applies to map='joint' only "
                             f"(got map={self.map!r})")
        if self.anchor == "task" and (self.acc == "max" or self.penalty != "quad"):
            raise ValueError("NAI option anchor='task' needs a linear accumulation and "
                             f"penalty='quad' (got acc={self.acc!r}, penalty={self.penalty!r})")
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError(f"NAI option n_samples must be positive, got {self.n_samples}")


#: trunk modules that keep each unit's identity (a channel stays a channel through pooling;
#: dropout after the activation changes no unit: the statistics are taken before it)
_PASS_THROUGH = (nn.Dropout, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten)
_WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


def trunk_unit_layers(model: nn.Module) -> list[tuple[str, str]]:
    """``(weight layer name, activation name)`` of each hidden layer of ``model.trunk``.

    NAI needs to know which weights feed which units; it supports a ``trunk`` that is an
    ``nn.Sequential`` of ``Linear`` or ``Conv2d`` layers each followed by an elementwise
    activation, with ``Dropout``, ``MaxPool2d`` / ``AvgPool2d`` and ``Flatten`` between them and
    an ``Unflatten`` first (:class:`~.models.ContinualMLP`, :class:`~.models.ContinualCNN`).
    The units of a convolution are its output channels, or each (channel, row, column) with
    ``conv_units="position"``. It names the module at fault otherwise.
    """
    trunk = getattr(model, "trunk", None)
    if not isinstance(trunk, nn.Sequential):
        raise TypeError(
            f"NAI needs a model with a 'trunk' nn.Sequential of Linear/Conv2d + activation "
            f"layers (e.g. MultiHeadNet); {type(model).__name__} has none"
        )
    children = list(trunk.named_children())
    pairs: list[tuple[str, str]] = []
    i = 1 if children and isinstance(children[0][1], nn.Unflatten) else 0
    while i < len(children):
        name, mod = children[i]
        if not isinstance(mod, _WEIGHT_LAYERS):
            raise TypeError(
                f"NAI: trunk.{name} is {type(mod).__name__}; expected Linear or Conv2d layers "
                "each followed by an activation (then optionally Dropout, pooling, Flatten)"
            )
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        if nxt is None or isinstance(nxt, _WEIGHT_LAYERS + _PASS_THROUGH):
            raise TypeError(
                f"NAI: trunk.{name} ({type(mod).__name__}) is not followed by an activation"
            )
        pairs.append((name, children[i + 1][0]))
        i += 2
        while i < len(children) and isinstance(children[i][1], _PASS_THROUGH):
            i += 1
    return pairs


def _per_unit(m: Tensor) -> Tensor:
    """A statistic per unit: the mean over a channel's spatial positions for a conv layer."""
    return m.flatten(1).mean(1) if m.dim() > 1 else m


def _map_shapes(model: MultiHeadNet) -> dict[str, tuple[tuple[int, ...], list[nn.Module]]]:
    """Per weight layer of the trunk: the unit map it reads, ``(C, H, W)`` (for a ``Linear``
    after ``Flatten``, the map that ``Flatten`` received; ``()`` for a flat input), and the
    pooling layers between it and the weight layer before it (one probe forward)."""
    shapes: dict[str, tuple[int, ...]] = {}
    between: dict[str, list[nn.Module]] = {}
    flat_shape: list[tuple[int, ...]] = []
    pools: list[nn.Module] = []
    hooks = []
    for name, mod in model.trunk.named_children():
        if isinstance(mod, nn.Flatten):
            hooks.append(mod.register_forward_hook(
                lambda m, a, out: flat_shape.append(tuple(a[0].shape[1:]))))
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            pools.append(mod)
        elif isinstance(mod, _WEIGHT_LAYERS):
            def record(m, a, out, name=f"trunk.{name}"):
                shapes[name] = (tuple(a[0].shape[1:]) if a[0].dim() > 2
                                else flat_shape[-1] if flat_shape else ())
            hooks.append(mod.register_forward_hook(record))
            between[f"trunk.{name}"], pools = pools, []
    p = next(model.parameters())
    try:
        with torch.no_grad():
            model.trunk(torch.zeros(1, model.config["n_inputs"], dtype=p.dtype,
                                    device=p.device))
    finally:
        for h in hooks:
            h.remove()
    return {k: (v, between[k]) for k, v in shapes.items()}


def _to_map(i_in: Tensor, shape: tuple[int, ...], pools: list[nn.Module],
            name: str) -> Tensor:
    """Input-unit importances as the ``(C, H, W)`` map ``name`` reads. A map taken before a
    pooling layer is average-pooled over the same windows (a max-pooled unit stands for its
    window), so the result is the importance of the units the layer reads."""
    if i_in.dim() == 1:
        return i_in.reshape(shape)
    for pool in pools:
        i_in = F.avg_pool2d(i_in[None], pool.kernel_size, pool.stride, pool.padding,
                            ceil_mode=pool.ceil_mode)[0]
    if tuple(i_in.shape) != tuple(shape):
        raise ValueError(f"NAI: {name} reads a {tuple(shape)} map, but the units before it "
                         f"pool to {tuple(i_in.shape)}")
    return i_in


def _conv_position_omega(i_out: Tensor, i_in: Tensor | None, w: Tensor, how: str,
                         name: str) -> Tensor:
    """Ω of a conv kernel from per-position unit importances (``conv_units="position"``).

    Entry (o, i, u, v) multiplies input unit (i, p + (u, v)) into output unit (o, p) at every
    output position p, so Ω[o, i, u, v] = mean_p map(I_out[o, p], I_in[i, p + (u, v)]).
    """
    c_out, c_in, kh, kw = w.shape
    a = i_out.reshape(c_out, -1)  # (C_out, P)
    if i_in is None:  # the inputs have importance 0: every entry takes its unit's importance
        return a.mean(1)[:, None, None, None].expand(w.shape)
    cols = F.unfold(i_in[None], (kh, kw))[0].reshape(c_in, kh * kw, -1)  # (C_in, k², P)
    if cols.shape[-1] != a.shape[1]:
        raise ValueError(f"NAI: {name} maps {tuple(i_in.shape)} to {tuple(i_out.shape)}; "
                         "conv_units='position' supports stride 1 without padding")
    if how == "prod":
        om = torch.einsum("op,ikp->oik", a, cols) / a.shape[1]
    else:
        om = _pair_elementwise(a[:, None, None, :], cols[None], how).mean(-1)
    return om.reshape(w.shape)


def _expand_in(i_in: Tensor, n_in: int, name: str) -> Tensor:
    """Input-unit importances for a layer with ``n_in`` inputs.

    After ``Flatten`` a ``Linear`` reads each channel's ``H·W`` positions in a row
    (channel-major), so each channel's importance is repeated ``H·W`` times.
    """
    if i_in.numel() == n_in:
        return i_in
    if n_in % i_in.numel():
        raise ValueError(f"NAI: {name} has {n_in} inputs, not a multiple of the "
                         f"{i_in.numel()} units of the layer before it")
    return i_in.repeat_interleave(n_in // i_in.numel())


def normalise(m: Tensor, how: str, tau: float = 1.0) -> Tensor:
    """Per-layer normalisation of raw neuron importances (see :class:`NAIOptions`)."""
    m = m.double()
    if how == "none":
        return m
    if how == "mean":
        d = m.mean()
        return m / d if d > 0 else torch.zeros_like(m)
    if how == "max":
        d = m.max()
        return m / d if d > 0 else torch.zeros_like(m)
    if how == "zscore":
        s = m.std(unbiased=False)
        return ((m - m.mean()) / s).clamp_min(0) if s > 0 else torch.zeros_like(m)
    if how == "rank":
        n = m.numel()
        ranks = torch.empty_like(m)
        ranks[m.argsort()] = torch.arange(n, dtype=m.dtype)
        return ranks / max(n - 1, 1)
    if how == "softmax":
        return m.numel() * torch.softmax(m / tau, 0)
    raise ValueError(f"unknown normalisation {how!r}")


def _pair(i_out: Tensor, i_in: Tensor | None, how: str) -> Tensor:
    """Ω of a weight matrix ``(out, in)`` from its end units' importances."""
    if i_in is None:  # first layer: the inputs have importance 0 → the unit's own importance
        return i_out[:, None]
    return _pair_elementwise(i_out[:, None], i_in[None, :], how)


def _pair_elementwise(a: Tensor, b: Tensor, how: str) -> Tensor:
    """``map(a, b)`` of :class:`NAIOptions`, broadcast."""
    if how == "out":
        return torch.broadcast_tensors(a, b)[0]
    if how == "max":
        return torch.maximum(a, b)
    if how == "mean":
        return (a + b) / 2
    if how == "min":
        return torch.minimum(a, b)
    return a * b


def _divide_trunk(values: dict[str, Tensor], d: Tensor) -> dict[str, Tensor]:
    """The trunk's entries of ``values`` divided by the task's one scale ``d`` (zeros when
    ``d`` is 0: a task with no importance anywhere), the others as they are."""
    return {k: (v / d if d > 0 else torch.zeros_like(v)) if k.startswith("trunk.") else v
            for k, v in values.items()}


class _ExplainedOutput(nn.Module):
    """What NAI's conductances explain, from a :class:`~.models.MultiHeadNet`'s head logits
    z: ``centred`` z − mean_k z_k, or ``logprob`` log softmax(z) (``conductance_target``)."""

    def __init__(self, net: MultiHeadNet, target: str) -> None:
        super().__init__()
        self.net = net
        self.target = target

    def forward(self, x: Tensor, task: int | Tensor | None = None) -> Tensor:
        z = self.net(x, task)
        if self.target == "logprob":
            return torch.log_softmax(z, 1)
        return z - z.mean(1, keepdim=True)


@torch.no_grad()
def _fisher_weights(model: MultiHeadNet, x: Tensor, y: Tensor, head: int, *,
                    normalised: bool = True) -> Tensor:
    """Per-example weights p_y(1 − p_y) / mean, p the finished task's softmax (eval mode);
    p_y(1 − p_y) itself with ``normalised=False`` (``conductance_weight="fisher-raw"``).

    The Fisher information of a softmax output puts weight p_y(1 − p_y) on an example
    (for a 2-way head, exactly the Bernoulli variance of the logistic model): examples the
    task classifies with full confidence tell little about which units hold its decisions, and
    the few near the boundary, the ones a small drift flips, tell the most. Normalised to mean
    1, so the importance keeps the scale of the unweighted E[c²]; a task classified with
    certainty everywhere (all weights 0 in float64) falls back to uniform weights. Left
    unnormalised, a task the model is less sure of weighs more, as in the Fisher (and one
    classified with certainty everywhere gets no importance, as its Fisher is 0).
    """
    p = torch.cat([torch.softmax(model(x[s:s + 4096], task=head).double(), 1)
                   for s in range(0, x.shape[0], 4096)])
    py = p.gather(1, y.view(-1, 1)).squeeze(1)
    w = py * (1 - py)
    if not normalised:
        return w
    if not float(w.sum()) > 0:
        return torch.ones_like(w)
    return w / w.mean()


class NAI(Strategy):
    """Neuron-activation-importance regulariser (our design of Kim & Lee 2021; see module doc)."""

    name = "nai"

    def __init__(self, lam: float, options: NAIOptions | None = None, *, seed: int = 0) -> None:
        self.lam = check_strength("nai lambda", lam)
        self.options = options or NAIOptions()
        self.seed = seed
        self.omega: dict[str, Tensor] = {}      # per shared parameter
        self.node: dict[str, Tensor] = {}       # per linear layer name: accumulated I (group)
        self.anchor: dict[str, Tensor] = {}
        #: anchor="task": Σ_t a_t Ω_t ⊙ θ*_t per shared parameter (θ̄ = moment / Ω)
        self.moment: dict[str, Tensor] = {}
        self.n_tasks = 0
        #: the normalised unit importances of the last task, per layer (for plots/inspection)
        self.last_importance: dict[str, Tensor] = {}
        #: task_weight="uncertainty": each finished task's u_t = mean p_y(1 − p_y), before the
        #: power γ, in the order the tasks were learned (to choose λ for a γ: λ ∝ u^(1 − γ))
        self.task_uncertainty: list[float] = []
        self._joint: dict[str, Tensor] = {}  # map="joint": E_n[s_i(n) a_j(n)²] per layer

    def hyperparameters(self) -> dict[str, Any]:
        return {"lam": self.lam, **asdict(self.options)}

    # ------------------------------------------------------------------ importances

    def _conductance_stat(self, c: Tensor, weight: Tensor | None) -> Tensor:
        """Per example and unit: ``conductance_stat`` of the conductances ``c`` (N, ...),
        times the example's weight (``conductance_weight="fisher"``) when given."""
        part = c.square() if self.options.conductance_stat == "sq" else c.abs()
        if weight is not None:
            part = part * weight.to(part).view(-1, *([1] * (part.dim() - 1)))
        return part

    def _activation_stat(self, model: MultiHeadNet, layer: str, batches: list[Tensor],
                         stat: str) -> Tensor:
        """``stat`` (an ``NAIOptions.stat``) of ``trunk.<layer>``'s outputs per unit: a conv
        channel's statistic is averaged over its positions unless ``conv_units="position"``."""
        st = activation_statistics(model.trunk, layer, batches,
                                   collect_mode=self.options.collect_mode)
        if stat == "mean":
            m = st.mean
        elif stat in ("abs", "pre"):
            m = st.mean_abs
        elif stat == "sq":
            m = st.mean_sq
        elif stat == "var":
            m = (st.mean_sq - st.mean.square()).clamp_min(0)
        else:  # nonzero: the mean over the examples where the unit is active
            frac = st.frac_active
            m = torch.where(frac > 0, st.mean.clamp_min(0) / frac.clamp_min(1e-12),
                            torch.zeros_like(frac))
        return m if self.options.conv_units == "position" else _per_unit(m)

    def _add_joint(self, model: MultiHeadNet, lin: str, x: Tensor, head: int,
                   unit: Tensor) -> None:
        """Add Σ_n s_i(n) a_j(n)² of one chunk to ``self._joint`` (``map="joint"``), ``unit``
        the chunk's weighted conductance statistic per example and unit (per position)."""
        layer = getattr(model.trunk, lin)
        seen: list[Tensor] = []
        hook = layer.register_forward_hook(lambda m, a, out: seen.append(a[0].detach()))
        try:
            with torch.no_grad():
                model(x, task=head)
        finally:
            hook.remove()
        a2 = seen[0].double().square()
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.padding != (0, 0) or layer.dilation != (1, 1):
                raise ValueError(f"NAI: map='joint' supports Conv2d with stride 1 and no "
                                 f"padding; trunk.{lin} has stride {layer.stride}, padding "
                                 f"{layer.padding}")
            cols = F.unfold(a2, layer.kernel_size)  # (n, C_in·kh·kw, P)
            u = unit.flatten(2)  # (n, C_out, P)
            part = torch.einsum("nop,nkp->ok", u, cols)
            if self.options.joint_positions == "mean":
                part = part / u.shape[-1]
            part = part.reshape(layer.weight.shape)
        else:
            part = unit.T @ a2
        name = f"trunk.{lin}"
        self._joint[name] = part if name not in self._joint else self._joint[name] + part

    def _samples(self, data: TaskData) -> tuple[Tensor, Tensor]:
        """The task's examples (and labels) its importances are measured on: ``n_samples``
        drawn with a seed of the strategy and the task, or all of them."""
        x, y = data.x, data.y
        n = self.options.n_samples
        if n is not None and n < x.shape[0]:
            g = torch.Generator().manual_seed(self.seed + 7919 * data.identity)
            idx = torch.randperm(x.shape[0], generator=g)[:n]
            x, y = x[idx], y[idx]
        return x, y

    def _raw(self, model: MultiHeadNet, data: TaskData) -> dict[str, Tensor]:
        """Raw importance m^l per linear layer name (``trunk.<i>`` and ``heads.0``)."""
        o = self.options
        self._joint = {}
        x, y = self._samples(data)
        pairs = trunk_unit_layers(model)
        raw: dict[str, Tensor] = {}
        batches = [x[s:s + 1024] for s in range(0, x.shape[0], 1024)]
        if o.source == "conductance":
            from ..neurons.conductance import LayersTotalConductance

            was_training = model.training
            model.eval()
            explained, prefix = model, ""
            if o.conductance_target != "logit":
                explained, prefix = _ExplainedOutput(model, o.conductance_target), "net."
            weight = None
            if o.conductance_weight != "uniform":
                weight = _fisher_weights(model, x, y, data.head,
                                         normalised=o.conductance_weight == "fisher")
            try:
                # every layer's conductances from one sweep of the path per chunk (the same
                # numbers as one TotalConductance per layer, without repeating the forward pass per layer)
                ltc = LayersTotalConductance(explained,
                                             [f"{prefix}trunk.{act}" for _, act in pairs])
                sums: dict[str, Tensor] = {}
                for s in range(0, x.shape[0], 512):
                    cs = ltc.attribute(
                        x[s:s + 512], baselines=torch.zeros_like(x[s:s + 512]),
                        target=y[s:s + 512], additional_forward_args=(data.head,),
                        n_steps=o.conductance_steps, completeness_tol=None,
                    )
                    w_s = None if weight is None else weight[s:s + 512]
                    for (lin, _act), c in zip(pairs, cs):
                        c = c.detach().double()
                        part = self._conductance_stat(c, w_s)
                        if o.map == "joint":
                            self._add_joint(model, lin, x[s:s + 512], data.head, part)
                        if c.dim() > 2 and o.conv_units == "channel":
                            # a channel's conductance is the sum over its positions (the
                            # conductances of a layer sum to the output change: completeness)
                            part = self._conductance_stat(c.flatten(2).sum(2), w_s)
                        part = part.sum(0)  # per unit: (C,) or, per position, (C, H, W)
                        sums[lin] = part if lin not in sums else sums[lin] + part
                for lin, _act in pairs:
                    raw[f"trunk.{lin}"] = sums[lin] / x.shape[0]
                    if o.map == "joint":
                        self._joint[f"trunk.{lin}"] /= x.shape[0]
            finally:
                model.train(was_training)
            if o.input_side == "activation":
                # the input side's moment, as the inputs' own: E[a²] for stat="sq", else E|a|
                moment = "sq" if o.stat == "sq" else "abs"
                for lin, act in pairs:
                    raw[f"act:trunk.{lin}"] = self._activation_stat(model, act, batches, moment)
        else:
            for lin, act in pairs:
                layer = lin if o.stat == "pre" else act
                raw[f"trunk.{lin}"] = self._activation_stat(model, layer, batches, o.stat)
        if o.input_importance == "activation":
            xd = x.double()
            first = getattr(model.trunk, pairs[0][0])
            if isinstance(first, nn.Conv2d) and o.conv_units == "channel":
                # the input units are the image's channels
                xd = xd.reshape(xd.shape[0], first.in_channels, -1).transpose(1, 2)
                xd = xd.reshape(-1, first.in_channels)
            raw["input"] = xd.square().mean(0) if o.stat == "sq" else xd.abs().mean(0)
        if model.shared_head and o.head_importance == "logit":
            st = activation_statistics(model, "heads.0", [x[s:s + 1024] for s in
                                                          range(0, x.shape[0], 1024)],
                                       collect_mode=o.collect_mode)
            raw["heads.0"] = st.mean.clamp_min(0)
        elif model.shared_head:
            raw["heads.0"] = torch.ones(model.heads[0].out_features, dtype=torch.float64)
        return raw

    def _weight_importance(self, model: MultiHeadNet, unit: dict[str, Tensor]) -> dict:
        o = self.options
        new: dict[str, Tensor] = {}
        prev: Tensor | None = unit.get("input")
        names = [f"trunk.{lin}" for lin, _ in trunk_unit_layers(model)]
        if model.shared_head:
            names.append("heads.0")
        params = dict(model.named_parameters())
        maps = _map_shapes(model) if o.conv_units == "position" else {}
        for name in names:
            i_out = unit[name]
            w = params[f"{name}.weight"]
            if name in maps and maps[name][0] and prev is not None:
                prev = _to_map(prev, *maps[name], name)
                if w.dim() == 2:  # Flatten: the Linear reads each position's own unit
                    prev = prev.flatten()
            if o.map == "joint" and name in self._joint:
                j = self._joint[name]
                if o.norm in ("task", "none"):  # one conductance factor: norm="task" takes
                    om = j                         # the task's scale off below
                else:
                    om = j / j.mean() if j.mean() > 0 else torch.zeros_like(j)
                ob = i_out.reshape(w.shape[0], -1).mean(1)
            elif w.dim() == 4 and o.conv_units == "position":
                om = _conv_position_omega(i_out, prev, w, o.map, name)
                ob = i_out.reshape(w.shape[0], -1).mean(1)
            else:
                if prev is not None:
                    prev = _expand_in(prev, w.shape[1], name)
                om = _pair(i_out, prev, o.map)
                if w.dim() == 4:  # a conv kernel (out, in, kh, kw): one Ω per channel pair
                    om = om[:, :, None, None]
                om = om.expand(w.shape)
                ob = i_out
            if o.floor > 0:
                om = om + o.floor * om.mean()
                ob = ob + o.floor * ob.mean()
            new[f"{name}.weight"] = om.to(w.dtype).contiguous()
            new[f"{name}.bias"] = ob.to(w.dtype).clone()
            prev = unit.get(f"act:{name}", i_out)
        return new

    def _accumulate(self, old: Tensor | None, new: Tensor) -> Tensor:
        o = self.options
        if old is None:
            return new.clone()
        if o.acc == "max":
            return torch.maximum(old, new)
        if o.acc == "decay":
            return o.eta * old + new
        if o.acc == "sum":
            return old + new
        return old + (new - old) / (self.n_tasks + 1)  # running mean over tasks

    def after_task(self, model: nn.Module, data: TaskData) -> None:
        if not isinstance(model, MultiHeadNet):
            trunk_unit_layers(model)  # raises the descriptive error for unsupported models
            raise TypeError(f"NAI supports MultiHeadNet models, got {type(model).__name__}")
        o = self.options
        convs = [lin for lin, _ in trunk_unit_layers(model)
                 if isinstance(getattr(model.trunk, lin), nn.Conv2d)]
        if convs and (o.downstream != "none" or o.reinit > 0 or o.penalty == "group"):
            raise ValueError(
                f"NAI: downstream='weights', reinit > 0 and penalty='group' support Linear "
                f"layers only; trunk.{convs[0]} is a Conv2d"
            )
        # unit importances are small vectors: keep them on the CPU in float64 whatever device
        # the model trains on (conductance comes back on the model's device, a shared head's
        # uniform importances are made on the CPU); Ω moves to the model's device below
        raw = {k: v.detach().to("cpu", torch.float64) for k, v in self._raw(model, data).items()}
        if o.norm == "task":  # one scale per task, taken from Ω below
            unit = dict(raw)
        elif o.norm == "network":  # one scale per task: the mean of the trunk's layer means
            d = torch.stack([v.mean() for k, v in raw.items() if k.startswith("trunk.")]).mean()
            unit = _divide_trunk(raw, d)
            if "input" in unit:
                unit["input"] = normalise(unit["input"], "mean")
        else:  # per layer over all its units (a per-position map too), kept in its shape
            unit = {k: normalise(v.flatten(), o.norm, o.tau).reshape(v.shape)
                    for k, v in raw.items()}
        if o.downstream == "weights":
            self._weight_by_downstream(model, unit, data.head)
        self.last_importance = {k: v.clone() for k, v in unit.items()
                                if not k.startswith("act:")}
        if "heads.0" in unit and o.head_scale != 1.0:
            # after the plots' copy: the scale is a strength, not an importance
            unit["heads.0"] = unit["heads.0"] * o.head_scale
        new = self._weight_importance(model, unit)
        if o.norm == "task":
            d = torch.stack([v.double().mean() for k, v in new.items()
                             if k.startswith("trunk.") and k.endswith(".weight")]).mean()
            new = _divide_trunk(new, d)
        if o.task_weight == "uncertainty":
            x, y = self._samples(data)
            was_training = model.training
            model.eval()
            try:
                u = float(_fisher_weights(model, x, y, data.head, normalised=False).mean())
            finally:
                model.train(was_training)
            self.task_uncertainty.append(u)
            u = u ** o.task_weight_power
            new = {k: v * u for k, v in new.items()}
        for k in [k for k in unit if k.startswith("act:")]:
            del unit[k]  # input-side moments are no unit importances
        unit.pop("input", None)
        for k, v in unit.items():
            self.node[k] = self._accumulate(
                self.node.get(k), v.to(self._device(model), torch.float32)
            )
        if o.reinit > 0:
            self._reinit(model, unit, self.n_tasks + 1)
        last = {k: p.detach().clone() for k, p in model.shared_named_parameters()}
        for k, v in new.items():
            v = v.to(self._device(model))
            if o.anchor == "task":
                # the accumulation is linear in Ω (decay, sum, mean), so Σ a_t Ω_t θ*_t follows
                # the same rule as Ω_acc; n_tasks is still the count before this task here
                self.moment[k] = self._accumulate(self.moment.get(k), v * last[k])
            self.omega[k] = self._accumulate(self.omega.get(k), v)
        self.n_tasks += 1
        self.anchor = last
        if o.anchor == "task":
            self.anchor = {k: self._mean_anchor(k, last[k]) for k in last}

    def _mean_anchor(self, k: str, last: Tensor) -> Tensor:
        """θ̄ = Σ a_t Ω_t θ*_t / Σ a_t Ω_t for ``anchor="task"``; θ*_T where Ω is 0."""
        if k not in self.moment:
            return last
        om = self.omega[k]
        return torch.where(om > 0, self.moment[k] / om.clamp_min(torch.finfo(om.dtype).tiny),
                           last)

    def _weight_by_downstream(self, model: MultiHeadNet, unit: dict[str, Tensor],
                              head: int) -> None:
        """``I_i^l ← norm(I_i^l · Σ_k (W^{l+1}_ki)² I_k^{l+1})``, top-down from the task's head."""
        o = self.options
        w_next = model.heads[0 if model.shared_head else head].weight.detach().double()
        # a shared head has its own unit importances (_raw sets them); a task head counts 1 each
        i_next = (unit["heads.0"] if model.shared_head
                  else torch.ones(w_next.shape[0], dtype=torch.float64))
        for lin, _ in reversed(trunk_unit_layers(model)):
            name = f"trunk.{lin}"
            reach = (w_next.square() * i_next.to(w_next)[:, None]).sum(0).cpu()
            unit[name] = normalise(unit[name] * reach, o.norm, o.tau)
            i_next = unit[name]
            w_next = getattr(model.trunk, lin).weight.detach().double()

    @staticmethod
    def _device(model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    def _reinit(self, model: MultiHeadNet, unit: dict[str, Tensor], draw: int) -> None:
        """Re-draw the incoming weights of the least important hidden units, zero their outputs.

        Zeroing the outgoing weights keeps the function on earlier tasks unchanged except for
        the (least important) contribution of those units; the re-drawn units are free
        capacity for the next task (AGS-CL's re-initialisation, speculative for NAI).
        """
        g = torch.Generator().manual_seed(self.seed + 31 * draw)  # draw: tasks finished
        pairs = trunk_unit_layers(model)
        linears = [getattr(model.trunk, lin) for lin, _ in pairs]
        following: list[nn.Linear | list[nn.Linear]] = linears[1:] + [list(model.heads)]
        with torch.no_grad():
            for (lin, _), layer, nxt in zip(pairs, linears, following):
                imp = unit[f"trunk.{lin}"]
                k = int(self.options.reinit * imp.numel())
                if k == 0:
                    continue
                low = imp.argsort()[:k].to(layer.weight.device)
                bound = 1.0 / layer.in_features ** 0.5
                fresh = (torch.rand(k, layer.in_features, generator=g) * 2 - 1) * bound
                layer.weight[low] = fresh.to(layer.weight)
                layer.bias[low] = 0
                for out_layer in (nxt if isinstance(nxt, list) else [nxt]):
                    out_layer.weight[:, low] = 0

    # ------------------------------------------------------------------ penalty

    def penalty(self, model: nn.Module) -> Tensor | None:
        if not self.anchor or self.lam == 0:
            return None
        params = dict(model.named_parameters())
        if self.options.penalty == "quad":
            total = sum(
                (self.omega[k] * (params[k] - self.anchor[k]).square()).sum() for k in self.anchor
            )
            return 0.5 * self.lam * total
        total = 0
        for name, imp in self.node.items():
            dw = params[f"{name}.weight"] - self.anchor[f"{name}.weight"]
            db = params[f"{name}.bias"] - self.anchor[f"{name}.bias"]
            # the small constant keeps the gradient of ‖·‖₂ finite at θ = θ*
            norm = (dw.square().sum(1) + db.square() + 1e-12).sqrt()
            total = total + (imp * norm).sum()
        return self.lam * total

    def state_dict(self) -> dict[str, Any]:
        return {"omega": self.omega, "node": self.node, "anchor": self.anchor,
                "moment": self.moment, "n_tasks": self.n_tasks,
                "task_uncertainty": list(self.task_uncertainty)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.omega, self.node = dict(state["omega"]), dict(state["node"])
        self.anchor, self.n_tasks = dict(state["anchor"]), int(state["n_tasks"])
        self.moment = dict(state.get("moment", {}))  # absent from checkpoints before anchor
        self.task_uncertainty = list(state.get("task_uncertainty", []))  # before session 26
