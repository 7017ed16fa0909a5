"""Continual learning: metrics, strategies, NAI, the trainer's checkpoint/resume and errors.

Everything here runs on small synthetic task streams (Gaussian blobs), so it needs no data
files; the MNIST-backed streams are tested in test_continual_streams.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from neuron_importance.continual import (
    NAI,
    ContinualMLP,
    NAIOptions,
    Task,
    TaskData,
    TaskStream,
    TrainConfig,
    TrainingDiverged,
    average_accuracy,
    backward_transfer,
    check_order,
    forgetting,
    forward_transfer,
    intransigence,
    learned_and_final,
    make_strategy,
    run_sequence,
)
from neuron_importance.continual.nai import normalise
from neuron_importance.continual.strategies import _shared, _vmap_sums, per_example_grads

# ----------------------------------------------------------------------------- fixtures


def blob_stream(n_tasks: int = 3, n: int = 120, d: int = 12, seed: int = 0,
                shared_head: bool = False) -> TaskStream:
    """Two-class Gaussian blobs per task, each task along its own random direction."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        direction = torch.randn(d, generator=g)
        direction /= direction.norm()

        def draw(m: int, direction=direction) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, 2, (m,), generator=g)
            x = torch.randn(m, d, generator=g) + 2.5 * (2 * y[:, None] - 1) * direction
            return x, y

        (xtr, ytr), (xva, yva), (xte, yte) = draw(n), draw(n // 4), draw(n // 2)
        tasks.append(Task(t, f"blob {t}", (2 * t, 2 * t + 1), xtr, ytr, xva, yva, xte, yte,
                          ytr + 2 * t, yva + 2 * t, yte + 2 * t))
    return TaskStream("blobs", tasks, tuple(range(n_tasks)), shared_head=shared_head,
                      head_sizes=(2,) * n_tasks, n_global_classes=2 * n_tasks)


CFG = TrainConfig(epochs=3, batch_size=32, hidden=(16, 16), patience=1, lr=1e-2)


# ----------------------------------------------------------------------------- metrics

R = [[90.0, 40.0, 50.0],
     [80.0, 95.0, 45.0],
     [70.0, 85.0, 99.0]]


def test_metrics_closed_form() -> None:
    assert average_accuracy(R) == pytest.approx((70 + 85 + 99) / 3)
    # BWT over T-1 = 2 entries: ((70-90) + (85-95)) / 2
    assert backward_transfer(R) == pytest.approx(-15.0)
    # FWT: (R[0][1] - b1 + R[1][2] - b2) / 2 with b = (10, 20, 30)
    assert forward_transfer(R, [10, 20, 30]) == pytest.approx(((40 - 20) + (45 - 30)) / 2)
    # forgetting: task 0 max(90, 80) - 70 = 20; task 1 max(40, 95) - 85 = 10
    assert forgetting(R) == pytest.approx(15.0)
    assert intransigence(R, [92, 96, 99]) == pytest.approx([2.0, 1.0, 0.0])


def test_learned_and_final_regroups_by_task_identity() -> None:
    # R is the matrix of the order (2, 0, 1): its position 0 holds task 2
    got = learned_and_final(R, [2, 0, 1])
    assert got == {2: (90.0, 70.0), 0: (95.0, 85.0), 1: (99.0, 99.0)}
    # the tasks' own losses are −BWT spread over T tasks (the last one loses nothing)
    lost = [learned - final for learned, final in got.values()]
    assert np.mean(lost) == pytest.approx(-backward_transfer(R) * 2 / 3)
    with pytest.raises(ValueError, match="each of the matrix's 3 tasks once"):
        learned_and_final(R, [0, 0, 1])
    with pytest.raises(ValueError, match="each of the matrix's 3 tasks once"):
        learned_and_final(R, [0, 1])


def test_metrics_single_task_and_bad_shapes() -> None:
    assert backward_transfer([[50.0]]) == 0.0 and forgetting([[50.0]]) == 0.0
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[1.0, 2.0]])
    with pytest.raises(ValueError, match="one initial accuracy per task"):
        forward_transfer(R, [1.0])


def test_no_forgetting_means_zero_bwt() -> None:
    r = np.triu(np.full((4, 4), 97.0)) + np.tril(np.full((4, 4), 97.0), -1)
    assert backward_transfer(r) == 0.0 and forgetting(r) == 0.0


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "method, hp, match",
    [
        ("ewcc", {}, "unknown method 'ewcc'"),
        ("ewc", {}, "needs the hyperparameter 'lam'"),
        ("nai", {"lamb": 1.0}, r"needs the hyperparameter 'lam' \(got 'lamb'\)"),
        ("ewc", {"lam": -1.0}, "finite and >= 0"),
        ("si", {"c": float("nan")}, "finite and >= 0"),
        ("mas", {"lam": float("inf")}, "finite and >= 0"),
        ("l2", {"lam": 1.0, "gamma": 2.0}, "has no hyperparameter"),
        ("nai", {"lam": 1.0, "norm": "median"}, "norm='median' is not one of"),
        ("nai", {"lam": 1.0, "colour": 1}, "bad hyperparameters for 'nai'"),
        ("nai", {"lam": "big"}, "must be a number"),
    ],
)
def test_bad_configs_fail_before_training(method: str, hp: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_strategy(method, hp)


def test_order_must_be_a_permutation() -> None:
    assert check_order([2, 0, 1], 3) == (2, 0, 1)
    for bad in ([0, 1], [0, 0, 1], [0, 1, 3], [True, False, 2]):
        with pytest.raises(ValueError, match="permutation of 0..2"):
            check_order(bad, 3)
    with pytest.raises(ValueError, match="permutation"):
        blob_stream().reordered([0, 1, 1])


def test_train_config_checks() -> None:
    with pytest.raises(ValueError, match="scenario"):
        TrainConfig(scenario="domain")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=float("nan"))


# ----------------------------------------------------------------------------- per-example sums


def _nll(out: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
    return -torch.log_softmax(out, -1).gather(0, yi.reshape(1)).squeeze(0)


@pytest.mark.parametrize("shared_head", [False, True])
@pytest.mark.parametrize("reduce", [torch.square, torch.abs])
def test_per_example_sums_equal_a_loop_over_examples(shared_head: bool, reduce) -> None:
    torch.manual_seed(0)
    model = ContinualMLP(9, (7, 5), (3, 3), shared_head=shared_head).double()
    x = torch.randn(23, 9, dtype=torch.double)
    y = torch.randint(0, 3, (23,))
    fast = per_example_grads(model, _nll, x, y, 1, chunk=8, reduce=reduce)
    via_vmap = _vmap_sums(model, _shared(model), _nll, x, y, 1, 5, reduce)
    loop = {k: torch.zeros_like(p) for k, p in _shared(model).items()}
    for i in range(23):
        model.zero_grad()
        _nll(model(x[i:i + 1], task=1)[0], y[i]).backward()
        for k, p in _shared(model).items():
            loop[k] += reduce(p.grad)
    assert set(fast) == set(loop) == set(via_vmap)
    for k in loop:
        torch.testing.assert_close(fast[k], loop[k], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(via_vmap[k], loop[k], rtol=1e-10, atol=1e-12)
    # heads are not shared in the multi-head model, so they get no importance
    assert any(k.startswith("heads") for k in fast) == shared_head


def test_ewc_fisher_of_a_one_layer_softmax_model_is_closed_form() -> None:
    """Empirical Fisher of a softmax layer z = W a + b by hand: mean_n ((p_n − e_{y_n}) a_nᵀ)²."""

    class OneLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3).double()

        def forward(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
            return self.lin(x)

    torch.manual_seed(1)
    model = OneLayer()
    x = torch.randn(30, 4, dtype=torch.double)
    y = torch.randint(0, 3, (30,))
    ewc = make_strategy("ewc", {"lam": 1.0, "empirical": True})
    f = ewc.fisher(model, TaskData(x, y, lambda v: model(v), head=0, identity=0))
    with torch.no_grad():
        delta = torch.softmax(model(x), -1) - nn.functional.one_hot(y, 3).double()
    expected_w = (delta[:, :, None] * x[:, None, :]).square().mean(0)
    torch.testing.assert_close(f["lin.weight"], expected_w)
    torch.testing.assert_close(f["lin.bias"], delta.square().mean(0))


# ----------------------------------------------------------------------------- NAI


def test_nai_normalisations() -> None:
    m = torch.tensor([0.0, 1.0, 3.0])
    assert normalise(m, "mean").mean().item() == pytest.approx(1.0)
    assert normalise(m, "max").max().item() == pytest.approx(1.0)
    assert normalise(m, "rank").tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert normalise(m, "softmax").sum().item() == pytest.approx(3.0)
    z = normalise(m, "zscore")
    assert z.min().item() == 0.0 and z[2] > z[1]
    assert normalise(torch.zeros(3), "mean").abs().sum() == 0  # dead layer: no NaN


def _set_weights(model: ContinualMLP) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) % 3 - 1.0)


def test_nai_weight_importance_follows_the_unit_statistics() -> None:
    torch.manual_seed(0)
    model = ContinualMLP(4, (3, 2), (2,))
    _set_weights(model)
    x = torch.randn(50, 4)
    # floor=0.0 here and in the closed forms below: they are of Ω before the floor, whose
    # share is tested on its own (test_nai_floor_adds_a_uniform_share_of_each_tensors_mean)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", map="max", stat="mean",
                              input_importance="none"))
    data = TaskData(x, torch.zeros(50, dtype=torch.long), lambda v: model(v, task=0), 0, 0)
    nai.after_task(model, data)
    with torch.no_grad():
        h1 = torch.relu(model.trunk[0](x))
        h2 = torch.relu(model.trunk[2](h1))
    i1, i2 = h1.mean(0), h2.mean(0)
    # first layer: the inputs have importance 0, so each row takes its unit's importance
    torch.testing.assert_close(nai.omega["trunk.0.weight"], i1[:, None].expand(3, 4))
    torch.testing.assert_close(nai.omega["trunk.0.bias"], i1)
    torch.testing.assert_close(nai.omega["trunk.2.weight"],
                               torch.maximum(i2[:, None], i1[None, :]))
    torch.testing.assert_close(nai.omega["trunk.2.bias"], i2)
    assert not any(k.startswith("heads") for k in nai.omega)  # heads are not regularised
    # accumulation with decay: Ω ← 0.9 Ω + Ω_new; the same data again gives 1.9 Ω
    first = nai.omega["trunk.2.weight"].clone()
    nai.after_task(model, data)
    torch.testing.assert_close(nai.omega["trunk.2.weight"], 1.9 * first)


@pytest.mark.parametrize("stat, input_stat",
                         [("mean", torch.abs), ("sq", torch.square), ("var", torch.abs)])
def test_nai_input_importance_enters_the_first_layer(stat: str, input_stat) -> None:
    torch.manual_seed(0)
    model = ContinualMLP(4, (3,), (2,))
    x = torch.randn(60, 4) + torch.tensor([0.0, 1.0, 2.0, 3.0])
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="mean", map="prod", stat=stat,
                              input_importance="activation"))
    nai.after_task(model, TaskData(x, torch.zeros(60, dtype=torch.long),
                                   lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        h = torch.relu(model.trunk[0](x))
    unit = {"mean": h.mean(0), "sq": h.square().mean(0),
            "var": h.var(0, unbiased=False)}[stat]
    unit = unit / unit.mean()
    inp = input_stat(x).mean(0)
    inp = inp / inp.mean()
    torch.testing.assert_close(nai.omega["trunk.0.weight"], unit[:, None] * inp[None, :])
    torch.testing.assert_close(nai.omega["trunk.0.bias"], unit)
    assert "input" not in nai.node  # inputs have no incoming weights to hold


@pytest.mark.parametrize("map_, expected", [
    ("out", lambda a, b: a.expand(-1, b.shape[1])),
    ("mean", lambda a, b: (a + b) / 2),
    ("min", torch.minimum),
    ("prod", lambda a, b: a * b),
])
def test_nai_maps(map_: str, expected) -> None:
    torch.manual_seed(0)
    model = ContinualMLP(4, (3, 2), (2,))
    x = torch.randn(40, 4)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", map=map_, stat="sq"))
    nai.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long),
                                   lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        h1 = torch.relu(model.trunk[0](x))
        h2 = torch.relu(model.trunk[2](h1))
    a, b = h2.square().mean(0)[:, None], h1.square().mean(0)[None, :]
    torch.testing.assert_close(nai.omega["trunk.2.weight"], expected(a, b))


@pytest.mark.parametrize("shared", [False, True])
def test_nai_downstream_weighting_is_the_top_down_closed_form(shared: bool) -> None:
    """I_i^l ← norm(I_i^l · Σ_k (W^{l+1}_ki)² I_k^{l+1}), from the finished task's head down."""
    torch.manual_seed(0)
    heads = (10,) if shared else (2, 3)
    model = ContinualMLP(4, (3, 2), heads, shared_head=shared)
    x = torch.randn(40, 4)
    task = 0 if shared else 1
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="mean", map="prod", stat="sq", downstream="weights",
                              input_importance="none"))
    nai.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long),
                                   lambda v: model(v, task=task), task, 0))
    with torch.no_grad():
        h1 = torch.relu(model.trunk[0](x)).double()
        h2 = torch.relu(model.trunk[2](h1.float())).double()
        w_head = model.heads[task].weight.double()
        w2 = model.trunk[2].weight.double()

    def norm(v):
        return v / v.mean()

    i_head = torch.ones(w_head.shape[0], dtype=torch.float64)  # uniform head importance
    i2 = norm(norm(h2.square().mean(0)) * (w_head.square() * i_head[:, None]).sum(0))
    i1 = norm(norm(h1.square().mean(0)) * (w2.square() * i2[:, None]).sum(0))
    torch.testing.assert_close(nai.last_importance["trunk.2"], i2)
    torch.testing.assert_close(nai.last_importance["trunk.0"], i1)
    torch.testing.assert_close(nai.omega["trunk.2.weight"].double(), i2[:, None] * i1[None, :],
                               rtol=1e-6, atol=1e-6)
    # a unit the head does not read is left free
    with torch.no_grad():
        model.heads[task].weight[:, 0] = 0
    nai2 = NAI(1.0, NAIOptions(floor=0.0, downstream="weights"))
    nai2.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long),
                                    lambda v: model(v, task=task), task, 0))
    assert nai2.last_importance["trunk.2"][0] == 0
    with pytest.raises(ValueError, match="downstream"):
        NAIOptions(downstream="gradient")


def test_nai_head_scale_multiplies_only_a_shared_heads_importances() -> None:
    """head_scale = k: the shared head's Ω (weights, bias, node) is k times that at 1, the
    trunk's is unchanged, task heads are untouched, and a bad factor fails early."""
    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = torch.randint(0, 5, (40,))

    def state(model: ContinualMLP, scale: float) -> NAI:
        nai = NAI(1.0, NAIOptions(head_scale=scale))
        nai.after_task(model, TaskData(x, y, model, 0, 0))
        return nai

    shared = ContinualMLP(4, (6, 3), (5,), shared_head=True)
    plain, scaled = state(shared, 1.0), state(shared, 8.0)
    assert plain.omega.keys() == scaled.omega.keys()
    assert any(k.startswith("heads.0") for k in plain.omega)
    for k, v in plain.omega.items():
        want = 8.0 * v if k.startswith("heads.0") else v
        torch.testing.assert_close(scaled.omega[k], want, msg=k)
    torch.testing.assert_close(scaled.node["heads.0"], 8.0 * plain.node["heads.0"])
    # the plots' importances stay importances
    torch.testing.assert_close(scaled.last_importance["heads.0"],
                               plain.last_importance["heads.0"])
    y = y % 2  # labels of the first task head (2 classes)
    multi = ContinualMLP(4, (6, 3), (2, 3))
    plain, scaled = state(multi, 1.0), state(multi, 8.0)
    assert plain.omega.keys() == scaled.omega.keys()
    for k, v in plain.omega.items():
        torch.testing.assert_close(scaled.omega[k], v, msg=k)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="NAI head_scale"):
            NAIOptions(head_scale=bad)


def test_nai_shared_head_uses_clipped_mean_logits() -> None:
    torch.manual_seed(0)
    model = ContinualMLP(4, (3,), (5,), shared_head=True)
    x = torch.randn(40, 4)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", head_importance="logit"))
    nai.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long), model, 0, 0))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(nai.omega["heads.0.bias"], logits.mean(0).clamp_min(0))
    # the default: every unit of a shared head matters to every task
    uniform = NAI(1.0, NAIOptions(floor=0.0, norm="none"))
    uniform.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long), model, 0, 0))
    torch.testing.assert_close(uniform.omega["heads.0.bias"], torch.ones(5))


def test_nai_penalty_is_the_weighted_quadratic_and_zero_at_the_anchor() -> None:
    torch.manual_seed(0)
    model = ContinualMLP(4, (3,), (2,))
    nai = NAI(2.0)
    nai.after_task(model, TaskData(torch.randn(20, 4), torch.zeros(20, dtype=torch.long),
                                   lambda v: model(v, task=0), 0, 0))
    assert nai.penalty(model).item() == 0.0
    with torch.no_grad():
        model.trunk[0].weight[1, 2] += 0.5
    expected = 0.5 * 2.0 * nai.omega["trunk.0.weight"][1, 2] * 0.25
    assert nai.penalty(model).item() == pytest.approx(expected.item())
    # the group penalty: λ Ω_n ‖Δθ_n‖₂ for the one moved unit
    group = NAI(2.0, NAIOptions(penalty="group"))
    with torch.no_grad():
        model.trunk[0].weight[1, 2] -= 0.5
    group.after_task(model, TaskData(torch.randn(20, 4), torch.zeros(20, dtype=torch.long),
                                     lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        model.trunk[0].weight[1, 2] += 0.5
    assert group.penalty(model).item() == pytest.approx(
        2.0 * group.node["trunk.0"][1].item() * 0.5, rel=1e-5)


def test_nai_conductance_source_runs_and_is_nonnegative() -> None:
    torch.manual_seed(0)
    model = ContinualMLP(6, (5,), (2, 2))
    x, y = torch.randn(30, 6), torch.randint(0, 2, (30,))
    nai = NAI(1.0, NAIOptions(source="conductance", norm="none", conductance_steps=8))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=1), 1, 1))
    imp = nai.last_importance["trunk.0"]
    assert imp.shape == (5,) and bool((imp >= 0).all()) and imp.sum() > 0


@pytest.mark.parametrize("how", ["abs", "sq"])
def test_nai_conductance_of_a_one_layer_relu_net_is_closed_form(how: str) -> None:
    # f_y = w_y·relu(Wx) + c with zero biases is linear along the path αx from the zero
    # baseline, so the conductance of unit i for class y is exactly w_{y,i}·relu(W_i x)
    torch.manual_seed(0)
    model = ContinualMLP(6, (5,), (3,)).double()
    with torch.no_grad():
        model.trunk[0].bias.zero_()
    x, y = torch.randn(40, 6, dtype=torch.float64), torch.randint(0, 3, (40,))
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat=how, norm="none",
                              conductance_steps=4))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        c = model.heads[0].weight[y] * torch.relu(model.trunk[0](x))
    expected = c.abs().mean(0) if how == "abs" else c.square().mean(0)
    torch.testing.assert_close(nai.last_importance["trunk.0"], expected)


def _one_layer_net(seed: int, head_sizes: tuple[int, ...]):
    """A one-layer ReLU net with zero trunk biases (so the hidden layer is α·relu(Wx) along
    the path αx from the zero baseline), 40 examples and their labels."""
    torch.manual_seed(seed)
    model = ContinualMLP(6, (5,), head_sizes).double()
    with torch.no_grad():
        model.trunk[0].bias.zero_()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, head_sizes[0], (40,))
    return model, x, y


def _one_layer_centred_conductance(seed: int, head_sizes: tuple[int, ...]):
    """:func:`_one_layer_net` and the closed form of each unit's conductance for the centred
    logit z_y − mean_k z_k: the net is linear along the path, so c_i = (w_{y,i} − mean_k
    w_{k,i})·relu(W_i x) (the head bias is common to the baseline and drops out)."""
    model, x, y = _one_layer_net(seed, head_sizes)
    with torch.no_grad():
        w = model.heads[0].weight
        c = (w[y] - w.mean(0)) * torch.relu(model.trunk[0](x))
    return model, x, y, c


@pytest.mark.parametrize("head_sizes", [(2,), (3,)])
def test_nai_centred_conductance_is_closed_form(head_sizes: tuple[int, ...]) -> None:
    model, x, y, c = _one_layer_centred_conductance(1, head_sizes)
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                              conductance_steps=4, conductance_target="centred"))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    torch.testing.assert_close(nai.last_importance["trunk.0"], c.square().mean(0))
    # a unit that moves every logit alike gets no importance from the centred target
    with torch.no_grad():
        model.heads[0].weight[:, 2] = 0.7
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    assert nai.last_importance["trunk.0"][2].item() == pytest.approx(0.0, abs=1e-20)
    logit = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                                conductance_steps=4))
    logit.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    assert logit.last_importance["trunk.0"][2].item() > 0


@pytest.mark.parametrize("head_sizes", [(2,), (3,)])
def test_nai_logprob_conductance_matches_the_path_integral(head_sizes: tuple[int, ...]) -> None:
    # one ReLU layer, zero trunk biases: along the path αx the hidden layer is α·h with
    # h = relu(Wx), so unit i's conductance for log p_y is ∫₀¹ (V_yi − Σ_k p_k(α) V_ki) h_i dα,
    # p(α) = softmax(α V h + b); the oracle integrates it with a 4,000-point midpoint rule
    model, x, y = _one_layer_net(3, head_sizes)
    with torch.no_grad():
        h = torch.relu(model.trunk[0](x))
        v, b = model.heads[0].weight, model.heads[0].bias
        alphas = (torch.arange(4000, dtype=torch.float64) + 0.5) / 4000
        p = torch.softmax(alphas[:, None, None] * (h @ v.T)[None] + b, -1)  # (α, n, k)
        dlogp = v[y][None] - p @ v  # (α, n, units): ∂ log p_y / ∂h_i along the path
        c = dlogp.mean(0) * h
        gap = torch.log_softmax(model(x, task=0), 1).gather(1, y[:, None]).squeeze(1) - \
            torch.log_softmax(b.expand(40, -1), 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(c.sum(1), gap, rtol=1e-6, atol=1e-8)  # the oracle is complete
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                              conductance_steps=64, conductance_target="logprob"))
    nai.after_task(model, TaskData(x, y, lambda v_: model(v_, task=0), 0, 0))
    torch.testing.assert_close(nai.last_importance["trunk.0"], c.square().mean(0),
                               rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize(("norm", "power"), [("network", 1.0), ("mean", 1.0),
                                             ("network", 2.5)])
def test_nai_task_weight_scales_each_task_by_its_uncertainty(norm: str, power: float) -> None:
    # task_weight="uncertainty": task t's Ω is the plain one times u_t^γ, u_t = mean
    # p_y(1 − p_y) of its softmax; two tasks with heads of different sharpness get different
    # u_t, and the summed Ω is u_0^γ Ω_0 + u_1^γ Ω_1; the node importances are left as they are
    torch.manual_seed(4)
    model = ContinualMLP(6, (5, 4), (2, 2)).double()
    with torch.no_grad():
        model.heads[1].weight.mul_(4.0)
    x = torch.randn(30, 6, dtype=torch.float64)
    ys = [torch.randint(0, 2, (30,)) for _ in range(2)]
    base = NAIOptions(source="conductance", conductance_stat="sq", conductance_steps=4,
                      conductance_target="centred", norm=norm, acc="sum", floor=0.0)
    weighted = NAI(1.0, replace(base, task_weight="uncertainty", task_weight_power=power))
    us = []
    for t, y in enumerate(ys):
        data = TaskData(x, y, lambda v, t=t: model(v, task=t), t, t)
        plain = NAI(1.0, base)
        plain.after_task(model, data)
        before = {k: v.clone() for k, v in weighted.omega.items()}
        weighted.after_task(model, data)
        with torch.no_grad():
            py = torch.softmax(model(x, task=t), 1)[torch.arange(30), y]
        u = float((py * (1 - py)).mean())
        us.append(u)
        for k, om in plain.omega.items():
            torch.testing.assert_close(weighted.omega[k], before.get(k, 0) + u ** power * om)
        for k, v in plain.last_importance.items():
            torch.testing.assert_close(weighted.last_importance[k], v)
    assert us[1] < 0.8 * us[0]  # the sharper head is surer: the task weighs less
    # the raw u_t (before γ) are kept per task and survive a checkpoint round trip
    assert weighted.task_uncertainty == pytest.approx(us, rel=1e-9)
    resumed = NAI(1.0, replace(base, task_weight="uncertainty", task_weight_power=power))
    resumed.load_state_dict(weighted.state_dict())
    assert resumed.task_uncertainty == weighted.task_uncertainty
    assert plain.task_uncertainty == []  # without the factor nothing is measured
    with pytest.raises(ValueError, match="task_weight='loss' is not one of"):
        NAIOptions(task_weight="loss")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="task_weight_power must be finite and > 0"):
            NAIOptions(task_weight="uncertainty", task_weight_power=bad)
    with pytest.raises(ValueError, match="task_weight_power=2.5 needs task_weight='uncertainty'"):
        NAIOptions(task_weight_power=2.5)


@pytest.mark.parametrize("head_sizes", [(2,), (3,)])
def test_nai_fisher_weighted_conductance_is_closed_form(head_sizes: tuple[int, ...]) -> None:
    # the one-layer closed form of the centred conductance, each example weighted by
    # p_y(1 − p_y) of the model's softmax, the weights scaled to mean 1
    model, x, y, c = _one_layer_centred_conductance(2, head_sizes)
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                              conductance_steps=4, conductance_target="centred",
                              conductance_weight="fisher"))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        py = torch.softmax(model(x, task=0), 1)[torch.arange(40), y]
    weight = py * (1 - py)
    weight = weight / weight.mean()
    torch.testing.assert_close(nai.last_importance["trunk.0"], (weight[:, None] * c.square()).mean(0))
    # fisher-raw: the same weights unnormalised, so the task's scale is the mean p_y(1 − p_y)
    raw = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                              conductance_steps=4, conductance_target="centred",
                              conductance_weight="fisher-raw"))
    raw.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    torch.testing.assert_close(raw.last_importance["trunk.0"],
                               ((py * (1 - py))[:, None] * c.square()).mean(0))
    # a repeated example has one weight, so the weighting changes nothing
    same = TaskData(x[:1].repeat(8, 1), y[:1].repeat(8), lambda v: model(v, task=0), 0, 0)
    uniform = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                                  conductance_steps=4, conductance_target="centred"))
    uniform.after_task(model, same)
    nai.after_task(model, same)
    torch.testing.assert_close(nai.last_importance["trunk.0"], uniform.last_importance["trunk.0"])
    # a task classified with certainty everywhere (p_y(1 − p_y) = 0 in float64): uniform weights
    from neuron_importance.continual.nai import _fisher_weights

    with torch.no_grad():
        model.heads[0].weight.mul_(1e6)
        model.heads[0].bias.mul_(1e6)
    torch.testing.assert_close(_fisher_weights(model, x, y, 0), torch.ones(40, dtype=torch.float64))
    with pytest.raises(ValueError, match="conductance_weight='loss' is not one of"):
        NAIOptions(conductance_weight="loss")


def test_nai_conductance_target_is_checked() -> None:
    with pytest.raises(ValueError, match="conductance_target='margin' is not one of"):
        NAIOptions(conductance_target="margin")


def test_nai_tc_is_nai_with_squared_conductance() -> None:
    nai = make_strategy("nai-tc", {"lam": 2.0, "norm": "max"})
    assert isinstance(nai, NAI) and nai.name == "nai-tc" and nai.lam == 2.0
    o = nai.options
    assert (o.source, o.conductance_stat, o.n_samples, o.norm) == ("conductance", "sq", 2000, "max")
    assert o.conductance_target == "centred"  # the default of nai-tc, not of NAIOptions
    assert NAIOptions().conductance_target == "logit"
    logit = make_strategy("nai-tc", {"lam": 1.0, "conductance_target": "logit"})
    assert logit.options.conductance_target == "logit"  # a default, so it can be overridden
    with pytest.raises(ValueError, match="fixes source"):
        make_strategy("nai-tc", {"lam": 1.0, "source": "activation"})
    with pytest.raises(ValueError, match="needs the hyperparameter 'lam'"):
        make_strategy("nai-tc", {})


def test_nai_reinit_zeroes_the_outputs_of_the_least_important_units() -> None:
    torch.manual_seed(0)
    model = ContinualMLP(6, (10,), (2, 2))
    nai = NAI(1.0, NAIOptions(reinit=0.3, norm="none"))
    nai.after_task(model, TaskData(torch.randn(30, 6), torch.zeros(30, dtype=torch.long),
                                   lambda v: model(v, task=0), 0, 0))
    low = nai.last_importance["trunk.0"].argsort()[:3]
    for head in model.heads:
        assert head.weight[:, low].abs().sum() == 0
    assert model.trunk[0].bias[low].abs().sum() == 0


def test_nai_refuses_models_it_cannot_walk() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    nai = NAI(1.0)
    with pytest.raises(TypeError, match="trunk"):
        nai.after_task(model, TaskData(torch.randn(4, 3), torch.zeros(4, dtype=torch.long),
                                       model, 0, 0))


# ----------------------------------------------------------------------------- SI


def test_si_path_integral_on_a_quadratic() -> None:
    """On L = ½‖θ − c‖² with plain SGD, ω = −Σ g Δθ equals the exact loss decrease."""
    model = ContinualMLP(2, (2,), (2,))
    si = make_strategy("si", {"c": 1.0, "xi": 1e-3})
    target = {k: torch.randn_like(p) for k, p in _shared(model).items()}
    si.before_task(model, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start_loss = sum(0.5 * (p - target[k]).square().sum() for k, p in _shared(model).items())
    for _ in range(200):
        opt.zero_grad()
        loss = sum(0.5 * (p - target[k]).square().sum() for k, p in _shared(model).items())
        loss.backward()
        si.after_backward(model)
        opt.step()
        si.after_step(model)
    end_loss = sum(0.5 * (p - target[k]).square().sum() for k, p in _shared(model).items())
    path = sum(v.sum() for v in si._omega_path.values())
    # first-order path integral: exact up to O(lr) per step
    assert path.item() == pytest.approx((start_loss - end_loss).item(), rel=0.02)
    si.after_task(model, None)
    assert all(bool((v >= 0).all()) for v in si.omega.values())


# ----------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("method, hp", [
    ("finetune", {}), ("joint", {}), ("l2", {"lam": 1.0}), ("ewc", {"lam": 100.0}),
    ("online-ewc", {"lam": 100.0, "gamma": 0.9}), ("si", {"c": 1.0}), ("mas", {"lam": 1.0}),
    ("nai", {"lam": 0.1}),
])
def test_every_method_learns_the_blobs(method: str, hp: dict) -> None:
    res = run_sequence(blob_stream(), method, hp, CFG)
    t = 3
    assert len(res.acc_matrix) == t and all(len(r) == t for r in res.acc_matrix)
    assert all(res.acc_matrix[i][i] > 80 for i in range(t))  # each task learned when trained
    assert res.acc == pytest.approx(np.mean(res.acc_matrix[-1]))
    assert math.isfinite(res.bwt) and res.forgetting >= 0


def test_class_incremental_scenario_forgets_without_regularisation() -> None:
    cfg = TrainConfig(epochs=4, batch_size=32, hidden=(16, 16), patience=1, lr=1e-2,
                      scenario="class")
    res = run_sequence(blob_stream(), "finetune", {}, cfg)
    # a single head trained only on the newest classes no longer predicts the first ones
    assert res.acc_matrix[0][0] > 90 and res.acc_matrix[-1][0] < 30
    with pytest.raises(ValueError, match="shared head already"):
        run_sequence(blob_stream(shared_head=True), "finetune", {}, cfg)


def test_task_order_changes_the_training_order_not_the_tasks() -> None:
    stream = blob_stream()
    rev = stream.reordered([2, 1, 0])
    assert [t.identity for t in rev.tasks] == [2, 1, 0]
    assert rev.tasks[0].x_train is stream.tasks[2].x_train


def test_heads_of_finished_tasks_get_no_update() -> None:
    """Training task 1 with a fresh Adam leaves head 0 bit-for-bit unchanged."""
    stream = blob_stream()
    model = ContinualMLP(12, (16, 16), (2, 2, 2))
    before = model.heads[0].weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(stream.tasks[1].x_train, task=1),
                                       stream.tasks[1].y_train)
    loss.backward()
    opt.step()
    assert torch.equal(model.heads[0].weight, before)
    assert not torch.equal(model.heads[1].weight.detach(), before)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method, hp", [("nai", {"lam": 10.0}), ("si", {"c": 1.0}),
                                        ("ewc", {"lam": 100.0}),
                                        ("nai", {"lam": 10.0, "task_weight": "uncertainty"})])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, method: str, hp: dict) -> None:
    stream = blob_stream()
    full = run_sequence(stream, method, hp, CFG)
    ckpt = tmp_path / "run.pt"
    finished = []

    def stop_after_two(msg: str) -> None:
        finished.append(msg)
        if len(finished) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_sequence(stream, method, hp, CFG, checkpoint=ckpt, log=stop_after_two)
    assert torch.load(ckpt, weights_only=False)["done"] == 2
    lines: list[str] = []
    resumed = run_sequence(stream, method, hp, CFG, checkpoint=ckpt, log=lines.append)
    assert lines[0].startswith("resuming") and len(lines) == 2  # 1 resume line + task 3 only
    assert resumed.acc_matrix == full.acc_matrix
    assert resumed.init_acc == full.init_acc
    # the uncertainty factor's u_t of every task, the two resumed from the checkpoint too
    assert resumed.task_uncertainty == full.task_uncertainty
    if hp.get("task_weight") == "uncertainty":
        assert len(full.task_uncertainty) == 3
        assert all(0 < u <= 0.25 for u in full.task_uncertainty)  # p(1 − p) ≤ 1/4
        assert full.to_json()["task_uncertainty"] == full.task_uncertainty
    else:
        assert full.task_uncertainty == [] and "task_uncertainty" not in full.to_json()


def test_checkpoint_of_another_run_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "run.pt"
    run_sequence(blob_stream(n_tasks=2), "l2", {"lam": 1.0}, CFG, checkpoint=ckpt)
    with pytest.raises(ValueError, match="belongs to another run"):
        run_sequence(blob_stream(n_tasks=2), "l2", {"lam": 2.0}, CFG, checkpoint=ckpt)


def test_nan_loss_names_the_task_and_keeps_the_last_checkpoint(tmp_path) -> None:
    stream = blob_stream()
    stream.tasks[1].x_train[:, 0] = float("nan")
    ckpt = tmp_path / "run.pt"
    with pytest.raises(TrainingDiverged, match=r"task 2/3 \(blob 1\), epoch 1, step 1") as err:
        run_sequence(stream, "finetune", {}, CFG, checkpoint=ckpt)
    assert str(ckpt) in str(err.value)
    assert torch.load(ckpt, weights_only=False)["done"] == 1


# ----------------------------------------------------------------------------- dropout


def test_dropout_mlp_keeps_the_units_nai_walks() -> None:
    """With dropout after each activation NAI sees the same units and, at equal weights,
    computes the same importances (its statistics are taken in eval mode, before dropout)."""
    torch.manual_seed(0)
    plain = ContinualMLP(12, (16, 8), (2, 2))
    drop = ContinualMLP(12, (16, 8), (2, 2), dropout=0.5)
    assert [type(m).__name__ for m in drop.trunk] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
    rename = {"trunk.0": "trunk.0", "trunk.2": "trunk.3"}  # the dropout shifts the indices

    def renamed(key: str) -> str:
        layer, _, param = key.rpartition(".")
        return f"{rename.get(layer, layer)}.{param}"

    drop.load_state_dict({renamed(k): v for k, v in plain.state_dict().items()})
    x = torch.randn(40, 12)
    drop.eval()
    assert torch.equal(drop(x, task=0), plain(x, task=0))
    drop.train()
    assert not torch.equal(drop(x, task=0), plain(x, task=0))
    y = torch.randint(0, 2, (40,))
    omegas = []
    for model in (plain, drop):
        nai = NAI(1.0)
        nai.after_task(model, TaskData(x, y, model, 0, 0))
        omegas.append(nai.omega)
    assert set(omegas[1]) == {renamed(k) for k in omegas[0]}
    for k, v in omegas[0].items():
        torch.testing.assert_close(omegas[1][renamed(k)], v)


def test_dropout_config_checks_and_run_keys() -> None:
    from neuron_importance.continual.trainer import _config_key

    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="dropout"):
            TrainConfig(dropout=bad)
        with pytest.raises(ValueError, match="dropout"):
            ContinualMLP(4, (3,), (2,), dropout=bad)
    # no dropout: the key holds no dropout entry, so runs recorded before the option existed
    # keep their keys
    assert "dropout" not in _config_key(TrainConfig())
    assert _config_key(TrainConfig(dropout=0.2))["dropout"] == 0.2


def test_dropout_run_learns_and_resumes_exactly(tmp_path) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, hidden=(16, 16), patience=1, lr=1e-2,
                      dropout=0.3)
    stream = blob_stream()
    full = run_sequence(stream, "nai", {"lam": 0.1}, cfg)
    assert all(full.acc_matrix[i][i] > 80 for i in range(3))
    assert full.acc_matrix != run_sequence(stream, "nai", {"lam": 0.1}, CFG).acc_matrix
    ckpt = tmp_path / "run.pt"
    seen: list[str] = []

    def stop_after_one(msg: str) -> None:
        seen.append(msg)
        raise _Stop

    with pytest.raises(_Stop):
        run_sequence(stream, "nai", {"lam": 0.1}, cfg, checkpoint=ckpt, log=stop_after_one)
    resumed = run_sequence(stream, "nai", {"lam": 0.1}, cfg, checkpoint=ckpt)
    assert resumed.acc_matrix == full.acc_matrix


# ----------------------------------------------------------------------------- head warm-up


def test_head_warmup_trains_only_the_new_head() -> None:
    """The warm-up moves the task's own head and nothing else: the trunk, the other heads and
    the strategy (which never sees the steps) are left as they were, and the head's loss on the
    task falls."""
    from neuron_importance.continual.trainer import _warm_up_head

    stream = blob_stream(n_tasks=2)
    torch.manual_seed(0)
    model = ContinualMLP(12, (16, 16), stream.head_sizes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = stream.tasks[1]

    def loss() -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(task.x_train, task=1), task.y_train))

    start = loss()
    _warm_up_head(model, task.x_train, task.y_train, 1,
                  TrainConfig(batch_size=32, lr=1e-2, head_warmup=30), pos=1)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"heads.1.weight", "heads.1.bias"}
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("trunk."))
    assert loss() < 0.5 * start


def test_head_warmup_runs_learn_resume_exactly_and_are_keyed_apart(tmp_path) -> None:
    """A run with a warmed-up head learns every task, differs from the run without, and resumes
    exactly from a checkpoint; the option is part of a run's key only when it is set, so runs
    recorded before it existed keep theirs."""
    from neuron_importance.continual.trainer import _config_key

    assert "head_warmup" not in _config_key(TrainConfig())
    assert _config_key(TrainConfig(head_warmup=2))["head_warmup"] == 2
    stream = blob_stream(n_tasks=3, seed=3)
    cold = run_sequence(stream, "finetune", {}, CFG)
    warm_cfg = TrainConfig(**{**CFG.__dict__, "head_warmup": 2})
    warm = run_sequence(stream, "finetune", {}, warm_cfg)
    assert all(warm.acc_matrix[i][i] > 80 for i in range(3))
    assert warm.acc_matrix != cold.acc_matrix
    ckpt = tmp_path / "run.pt"
    with pytest.raises(_Stop):
        run_sequence(stream, "finetune", {}, warm_cfg, checkpoint=ckpt,
                     log=lambda m: (_ for _ in ()).throw(_Stop()))
    assert run_sequence(stream, "finetune", {}, warm_cfg, checkpoint=ckpt).acc_matrix \
        == warm.acc_matrix


def test_head_warmup_refuses_a_shared_head_and_bad_values() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="head_warmup must be an int >= 0"):
            TrainConfig(head_warmup=bad)
    with pytest.raises(ValueError, match="scenario='class' trains one shared head"):
        TrainConfig(head_warmup=1, scenario="class")
    with pytest.raises(ValueError, match="blobs has one shared head"):
        run_sequence(blob_stream(shared_head=True), "finetune", {},
                     TrainConfig(**{**CFG.__dict__, "head_warmup": 1}))


def _tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors inside a strategy's state (dicts, lists, tuples), flattened by path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = (obj.items() if isinstance(obj, dict)
             else enumerate(obj) if isinstance(obj, (list, tuple)) else ())
    out: dict[str, torch.Tensor] = {}
    for k, v in items:
        out.update(_tensors(v, f"{prefix}/{k}"))
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shared_head", [False, True])
@pytest.mark.parametrize("method, hp", [
    ("l2", {"lam": 1.0}), ("ewc", {"lam": 100.0}), ("online-ewc", {"lam": 100.0}),
    ("si", {"c": 1.0}), ("mas", {"lam": 1.0}), ("nai", {"lam": 0.1}),
    ("nai-tc", {"lam": 0.1}), ("nai-tc", {"lam": 0.1, "conductance_target": "centred"}),
    ("nai", {"lam": 0.1, "downstream": "weights", "reinit": 0.25}),
])
def test_strategy_state_on_the_gpu_equals_the_cpu(method: str, hp: dict,
                                                  shared_head: bool) -> None:
    """Two tasks of training steps and importances on CUDA and on the CPU from the same start:
    every tensor of the strategy's state and the penalty agree to float tolerance."""
    stream = blob_stream(n_tasks=2, shared_head=shared_head)
    torch.manual_seed(0)
    base = ContinualMLP(12, (16, 16), stream.head_sizes, shared_head=shared_head).double()
    states, penalties = {}, {}
    for device in ("cpu", "cuda"):
        model = ContinualMLP(12, (16, 16), stream.head_sizes, shared_head=shared_head)
        model.load_state_dict(base.state_dict())
        model = model.double().to(device)
        strategy = make_strategy(method, hp, seed=3)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for pos, task in enumerate(stream.tasks):
            head = model.head_index(task.identity)
            x, y = task.x_train.double().to(device), task.y_train.to(device)
            strategy.before_task(model, pos)
            for s in range(0, x.shape[0], 40):
                loss = torch.nn.functional.cross_entropy(model(x[s:s + 40], task=head),
                                                         y[s:s + 40])
                opt.zero_grad()
                loss.backward()
                strategy.after_backward(model)
                pen = strategy.penalty(model)
                if pen is not None:
                    pen.backward()
                opt.step()
                strategy.after_step(model)
            strategy.after_task(model, TaskData(x, y, lambda v, h=head, m=model: m(v, task=h),
                                                head, task.identity))
        states[device] = _tensors(strategy.state_dict())
        pen = strategy.penalty(model)
        penalties[device] = float(pen.detach()) if pen is not None else 0.0
    assert states["cpu"] and states["cpu"].keys() == states["cuda"].keys()
    for k, v in states["cpu"].items():
        torch.testing.assert_close(states["cuda"][k].cpu(), v, rtol=1e-6, atol=1e-9, msg=k)
    assert penalties["cuda"] == pytest.approx(penalties["cpu"], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("source", ["activation", "conductance"])
def test_nai_floor_adds_a_uniform_share_of_each_tensors_mean(source: str) -> None:
    """Ω ← Ω + floor · mean(Ω) per tensor, so near-zero importances still hold their weights."""
    torch.manual_seed(0)
    model = ContinualMLP(6, (5, 4), (2, 3))
    x = torch.randn(30, 6)
    y = torch.randint(0, 2, (30,))

    def omega(floor: float) -> dict:
        opts = {"source": source, "floor": floor}
        if source == "conductance":
            opts |= {"conductance_stat": "sq", "conductance_steps": 4}
        nai = NAI(1.0, NAIOptions(**opts))
        nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
        return nai.omega

    assert NAIOptions().floor == 0.003  # the default since session 14
    plain, floored = omega(0.0), omega(0.5)
    assert plain.keys() == floored.keys()
    for k, v in plain.items():
        torch.testing.assert_close(floored[k], v + 0.5 * v.mean())
        assert floored[k].min() >= 0.5 * v.mean() - 1e-6
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="NAI floor"):
            NAIOptions(floor=bad)


@pytest.mark.parametrize("acc", ["decay", "sum", "mean"])
@pytest.mark.parametrize("shared", [False, True])
def test_nai_task_anchors_are_the_sum_of_each_tasks_own_quadratic(acc: str, shared: bool) -> None:
    """anchor='task': the penalty is (λ/2) Σ_t a_t Ω_t ⊙ (θ − θ*_t)², each task pulling to
    the weights it ended with (EWC's form), checked against that sum term by term: its gradient
    exactly, its value up to the constant the one-quadratic form leaves out."""
    torch.manual_seed(0)
    heads = (4,) if shared else (2, 2, 2)
    model = ContinualMLP(6, (5, 4), heads)
    opts = NAIOptions(anchor="task", acc=acc, eta=0.7, source="conductance",
                      conductance_stat="sq", conductance_steps=4)
    nai = NAI(1.5, opts)
    terms: list[tuple[dict, dict]] = []  # (Ω_t, θ*_t), each task's Ω from a fresh NAI
    for t in range(3):
        with torch.no_grad():  # "training" on task t moves every weight
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x, y = torch.randn(25, 6), torch.randint(0, 2, (25,))
        head = 0 if shared else t
        data = TaskData(x, y, lambda v, h=head: model(v, task=h), head, t)
        alone = NAI(1.5, replace(opts, anchor="last"))
        alone.after_task(model, data)
        nai.after_task(model, data)
        terms.append((alone.omega, {k: p.detach().clone()
                                    for k, p in model.shared_named_parameters()}))
    n = len(terms)
    weights = {"decay": [0.7 ** (n - 1 - t) for t in range(n)], "sum": [1.0] * n,
               "mean": [1.0 / n] * n}[acc]

    def oracle() -> torch.Tensor:
        params = dict(model.named_parameters())
        return 0.75 * sum(a * (om[k] * (params[k] - th[k]).square()).sum()
                          for a, (om, th) in zip(weights, terms) for k in om)

    values = []
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        model.zero_grad()
        ours = nai.penalty(model)
        ours.backward()
        got = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        ref = oracle()
        ref.backward()
        for k, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(got[k], p.grad, rtol=1e-4, atol=1e-6, msg=k)
        values.append((ours.item(), ref.item()))
    # the value differs from the sum by a constant only
    assert values[0][0] - values[1][0] == pytest.approx(values[0][1] - values[1][1], rel=1e-4)
    # a resumed regulariser holds the same anchors
    again = NAI(1.5, opts)
    again.load_state_dict(nai.state_dict())
    assert again.penalty(model).item() == pytest.approx(nai.penalty(model).item())


def test_nai_task_anchors_need_a_linear_accumulation() -> None:
    for bad in ({"acc": "max"}, {"penalty": "group"}):
        with pytest.raises(ValueError, match="anchor='task'"):
            NAIOptions(anchor="task", **bad)
    with pytest.raises(ValueError, match="anchor"):
        NAIOptions(anchor="each")
