"""LayerActivation, streaming activation statistics and neuron-ablation curves (float64).

Oracles: a plain forward hook, direct statistics of the concatenated activations, and closed
forms on a model whose output is linear in the ablated layer (removing neuron j of that layer
lowers output t by exactly W[t, j]·a_j).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from nets import DT, SmallCNN, TwoInputNet, randn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from neuron_importance.attribution._common import AttributionError
from neuron_importance.evaluation import AblationCurves, ablate_neurons
from neuron_importance.neurons.activation import (
    ActivationStatistics,
    LayerActivation,
    activation_statistics,
)


class MLP(nn.Module):
    """Linear(5→8) → ReLU → Linear(8→3): the output is linear in the ``act`` layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(5, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x)))


class TwiceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.lin(x)).sum(dim=1, keepdim=True)


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, 2 * x


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.split = Split()
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.split(self.lin(x))
        return self.out(a + b)


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().to(DT).eval()


def cnn(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().to(DT).eval()


def hooked(model: nn.Module, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    seen = []
    h = module.register_forward_hook(lambda _m, _i, o: seen.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        h.remove()
    assert len(seen) == 1
    return seen[0]


# ---------------------------------------------------------------------------------------------
# LayerActivation


@pytest.mark.parametrize("by_name", [False, True])
def test_layer_activation_equals_forward_hook(by_name):
    model = cnn()
    x = randn(3, 2, 6, 6, seed=1)
    layer = "conv" if by_name else model.conv
    got = LayerActivation(model, layer).attribute(x)
    assert torch.equal(got, hooked(model, model.conv, x))
    assert not got.requires_grad and got.shape == (3, 4, 4, 4)


def test_layer_activation_additional_args_and_tuple_output():
    torch.manual_seed(0)
    net = TwoInputNet(nn.Tanh()).to(DT)
    a, b, scale = randn(3, 5, seed=2), randn(3, 4, seed=3), randn(3, 3, seed=4)
    got = LayerActivation(net, "act_b").attribute((a, b), additional_forward_args=scale)
    assert torch.equal(got, hooked(net, net.act_b, a, b, scale))

    tn = TupleNet().to(DT)
    x = randn(2, 4, seed=5)
    second = LayerActivation(tn, "split", layer_output_index=1).attribute(x)
    torch.testing.assert_close(second, 2 * tn.lin(x).detach())
    with pytest.raises(AttributionError, match="layer_output_index"):
        LayerActivation(tn, "split").attribute(x)


def test_layer_activation_eval_mode_and_layer_errors():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 1)).to(DT).train()
    x = randn(8, 4, seed=6)
    with pytest.warns(UserWarning, match="training mode"):
        got = LayerActivation(model, "1").attribute(x)
    assert model.training and model[1].training  # restored
    torch.testing.assert_close(got, model[0](x).detach())  # dropout off

    with pytest.raises(AttributionError, match="not in the model"):
        LayerActivation(model, "nope")
    twice = TwiceNet().to(DT)
    with pytest.raises(AttributionError, match="ran 2 times"):
        LayerActivation(twice, "lin").attribute(randn(2, 4, seed=7))
    with pytest.raises(AttributionError, match="never reached"):
        LayerActivation(twice, twice.unused).attribute(randn(2, 4, seed=7))


# ---------------------------------------------------------------------------------------------
# activation statistics


def direct_stats(acts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Statistics over dim 0 of the concatenated activations, computed in one go."""
    a = acts.to(torch.float64)
    return {
        "mean": a.mean(0),
        "mean_abs": a.abs().mean(0),
        "mean_sq": (a * a).mean(0),
        "frac_active": (a > 0).to(torch.float64).mean(0),
        "std": a.std(0, correction=0),
    }


def assert_stats(stats: ActivationStatistics, acts: torch.Tensor) -> None:
    want = direct_stats(acts)
    assert stats.count == acts.shape[0]
    for key, value in want.items():
        torch.testing.assert_close(getattr(stats, key), value, rtol=1e-12, atol=1e-12)


def uneven_batches(seed: int = 10) -> list[torch.Tensor]:
    return [randn(n, 5, seed=seed + i) for i, n in enumerate((5, 3, 7, 1))]


def test_statistics_match_direct_computation_on_uneven_batches():
    model = mlp()
    batches = uneven_batches()
    acts = LayerActivation(model, "act").attribute(torch.cat(batches))
    stats = activation_statistics(model, "act", batches)
    assert stats.shape == (8,) and stats.layer == "act"
    assert stats.mean.dtype == torch.float64
    assert_stats(stats, acts)
    # pre-activation (signed) layer too, by module
    pre = activation_statistics(model, model.hidden, batches)
    assert_stats(pre, LayerActivation(model, "hidden").attribute(torch.cat(batches)))
    assert 0 < float(pre.frac_active.mean()) < 1


def test_statistics_tuple_dict_and_dataloader_batches():
    model = mlp()
    batches = uneven_batches()
    labels = [torch.zeros(len(b), dtype=torch.long) for b in batches]
    acts = LayerActivation(model, "act").attribute(torch.cat(batches))
    variants = {
        "tuple": list(zip(batches, labels)),
        "list": [[x, y] for x, y in zip(batches, labels)],
        "dict_x": [{"x": x, "label": y} for x, y in zip(batches, labels)],
        "dict_input": [{"input": x, "y": y} for x, y in zip(batches, labels)],
        "generator": (b for b in batches),
    }
    for kind, data in variants.items():
        stats = activation_statistics(model, "act", data)
        assert stats.count == 16, kind
        assert_stats(stats, acts)
    loader = DataLoader(TensorDataset(torch.cat(batches), torch.cat(labels)), batch_size=6)
    assert_stats(activation_statistics(model, "act", loader, progress=True), acts)
    # a bare tensor is one batch
    assert_stats(activation_statistics(model, "act", torch.cat(batches)), acts)


def test_statistics_multi_input_batches():
    torch.manual_seed(0)
    net = TwoInputNet(nn.Tanh()).to(DT)
    scale = torch.ones(3, dtype=DT)

    class Wrapped(nn.Module):  # a model whose inputs are (a, b): batches ((a, b), labels)
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, a, b):
            return self.net(a, b, scale)

    w = Wrapped()
    data = [((randn(n, 5, seed=i), randn(n, 4, seed=20 + i)), None) for i, n in enumerate((2, 5))]
    stats = activation_statistics(w, "net.act_b", data)
    acts = torch.cat([LayerActivation(w, "net.act_b").attribute(x) for x, _ in data])
    assert_stats(stats, acts)


def test_statistics_channel_reduction():
    model = cnn()
    batches = [randn(n, 2, 6, 6, seed=30 + n) for n in (3, 4, 2)]
    acts = LayerActivation(model, "conv").attribute(torch.cat(batches))  # (9, 4, 4, 4)

    per_unit = activation_statistics(model, "conv", batches)
    assert per_unit.shape == (4, 4, 4)
    assert_stats(per_unit, acts)

    channel = activation_statistics(model, "conv", batches, reduce="channel")
    assert channel.shape == (4,) and channel.reduce_dims == (2, 3)
    assert_stats(channel, acts.mean(dim=(2, 3)))
    for dims in ((2, 3), (-1, -2), [3, 2]):
        same = activation_statistics(model, "conv", batches, reduce_dims=dims)
        torch.testing.assert_close(same.mean_sq, channel.mean_sq, rtol=0, atol=0)

    pooled = activation_statistics(model, "conv", batches, reduce="channel", reduce_mode="pool")
    assert pooled.count == 9 * 16
    assert_stats(pooled, acts.permute(0, 2, 3, 1).reshape(-1, 4))
    # the pooled statistics are the spatial averages of the per-unit ones
    torch.testing.assert_close(pooled.mean_abs, per_unit.mean_abs.mean(dim=(1, 2)))
    torch.testing.assert_close(pooled.frac_active, per_unit.frac_active.mean(dim=(1, 2)))
    torch.testing.assert_close(pooled.mean, channel.mean)

    rows = activation_statistics(model, "conv", batches, reduce_dims=3)  # average over width
    assert rows.shape == (4, 4)
    assert_stats(rows, acts.mean(dim=3))

    with pytest.raises(AttributionError, match="batch"):
        activation_statistics(model, "conv", batches, reduce_dims=0)
    with pytest.raises(AttributionError, match="out of range"):
        activation_statistics(model, "conv", batches, reduce_dims=4)
    with pytest.raises(AttributionError, match="spatial"):
        activation_statistics(model, "fc", batches, reduce="channel")


def test_merge_equals_statistics_of_the_union():
    model = mlp()
    a_batches, b_batches = uneven_batches(10), uneven_batches(50)[:2]
    sa = activation_statistics(model, "hidden", a_batches)
    sb = activation_statistics(model, "hidden", b_batches)
    union = activation_statistics(model, "hidden", a_batches + b_batches)
    merged = sa.merge(sb)
    assert merged.count == union.count == sa.count + sb.count
    for key in ("mean", "mean_abs", "mean_sq", "frac_active", "std", "m2"):
        torch.testing.assert_close(
            getattr(merged, key), getattr(union, key), rtol=1e-12, atol=1e-12
        )
    assert sa.count == 16  # inputs untouched
    # accumulation over several "tasks" in any grouping
    sc = activation_statistics(model, "hidden", uneven_batches(90))
    torch.testing.assert_close(sa.merge(sb).merge(sc).std, sa.merge(sb.merge(sc)).std)

    with pytest.raises(ValueError, match="neuron shape"):
        sa.merge(activation_statistics(model, "out", a_batches))
    with pytest.raises(ValueError, match="layer"):
        sa.merge(activation_statistics(model, "act", a_batches))


def test_max_batches_and_serialisation():
    model = mlp()
    batches = uneven_batches()
    first_two = activation_statistics(model, "act", batches, max_batches=2)
    assert first_two.count == 8
    assert_stats(first_two, LayerActivation(model, "act").attribute(torch.cat(batches[:2])))
    loader = DataLoader(TensorDataset(torch.cat(batches)), batch_size=4)
    assert activation_statistics(model, "act", loader, max_batches=3).count == 12

    d = first_two.to_dict()
    back = ActivationStatistics.from_dict(json.loads(json.dumps(d)))
    assert back.count == first_two.count and back.layer == "act"
    for key in ("mean", "mean_abs", "mean_sq", "frac_active", "m2"):
        assert torch.equal(getattr(back, key), getattr(first_two, key))
    assert d["std"] == first_two.std.tolist()

    with pytest.raises(AttributionError, match="max_batches"):
        activation_statistics(model, "act", batches, max_batches=0)


def test_statistics_stable_for_large_offsets():
    class Offset(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.id = nn.Identity()

        def forward(self, x):
            return self.id(x + 1e8).sum(dim=1)

    xs = [randn(n, 3, seed=n) for n in (40, 17, 33)]
    stats = activation_statistics(Offset(), "id", xs)
    want = torch.cat(xs).std(0, correction=0)  # exact in float64 before the offset
    torch.testing.assert_close(stats.std, want, rtol=1e-6, atol=0)


def test_statistics_modes_and_batchnorm_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Dropout(0.5)).to(DT).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = uneven_batches()[:3]
    ev = activation_statistics(model, "2", batches)  # eval: dropout off, running stats used
    model.eval()
    assert_stats(ev, LayerActivation(model, "2").attribute(torch.cat(batches)))
    model.train()
    tr = activation_statistics(model, "1", batches, collect_mode="train")
    assert model.training and model[1].training and model[2].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # train-mode batch norm normalises each batch with its own statistics
    acts = torch.cat(
        [
            (model[0](b) - model[0](b).mean(0)) / model[0](b).var(0, correction=0).add(1e-5).sqrt()
            for b in batches
        ]
    )
    assert_stats(tr, acts.detach())


def test_statistics_errors():
    model = mlp()
    with pytest.raises(AttributionError, match="no batches"):
        activation_statistics(model, "act", [])
    with pytest.raises(AttributionError, match="'input' or 'x'"):
        activation_statistics(model, "act", [{"data": randn(2, 5, seed=1)}])
    with pytest.raises(AttributionError, match="not in the model"):
        activation_statistics(model, "missing", uneven_batches())
    with pytest.raises(AttributionError, match="ran 2 times"):
        activation_statistics(TwiceNet().to(DT), "lin", [randn(2, 4, seed=1)])
    with pytest.raises(AttributionError, match="never reached"):
        activation_statistics(TwiceNet().to(DT), "unused", [randn(2, 4, seed=1)])
    with pytest.raises(AttributionError, match="layer_output_index"):
        activation_statistics(TupleNet().to(DT), "split", [randn(2, 4, seed=1)])
    split = activation_statistics(
        TupleNet().to(DT), "split", [randn(2, 4, seed=1)], layer_output_index=0
    )
    assert split.shape == (6,)


# ---------------------------------------------------------------------------------------------
# ablation


def contributions(model: MLP, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """c[i, j] = W[t_i, j] · a_j(x_i): the exact drop from removing neuron j of ``act``."""
    a = LayerActivation(model, "act").attribute(x)
    return model.out.weight.detach()[target] * a


def test_single_neuron_drop_is_weight_times_activation():
    model = mlp()
    x = randn(6, 5, seed=40)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    c = contributions(model, x, target)
    for j in range(8):
        scores = torch.zeros(8, dtype=DT)
        scores[j] = 1.0  # shared scores: neuron j first for every example
        curves = ablate_neurons(model, "act", x, scores, target=target, k_values=[1])
        torch.testing.assert_close(curves.drop[:, 0], c[:, j], rtol=1e-12, atol=1e-12)


def test_top_k_by_exact_contribution_gives_the_maximal_drop_curve():
    model = mlp()
    x = randn(10, 5, seed=41)
    target = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(1))
    c = contributions(model, x, target)
    curves = ablate_neurons(model, model.act, x, c, target=target, random_orders=5, seed=3)
    assert isinstance(curves, AblationCurves)
    assert curves.k_values.tolist() == list(range(9))  # min(50, 8) + 1 values
    assert curves.level == "unit" and curves.n_neurons == 8 and curves.mode == "zero"
    want = torch.cat(
        [torch.zeros(10, 1, dtype=DT), c.sort(dim=1, descending=True).values.cumsum(dim=1)],
        dim=1,
    )
    torch.testing.assert_close(curves.drop, want, rtol=1e-12, atol=1e-12)
    # no order beats the exact top-k, per example and per k
    assert bool((curves.random_drop <= curves.drop.unsqueeze(0) + 1e-12).all())
    # removing everything removes the whole contribution of the layer, whatever the order
    torch.testing.assert_close(curves.random_drop[..., -1], c.sum(1).expand(5, 10))
    assert curves.area_under_curve() >= curves.area_under_curve("random")
    torch.testing.assert_close(
        curves.original, model(x).detach().gather(1, target[:, None]).squeeze(1)
    )
    # the least-important-first ranking gives the minimal curve
    low = ablate_neurons(model, "act", x, -c, target=target)
    assert bool((low.drop <= curves.drop + 1e-12).all())


def test_random_control_shape_seed_and_batch_size():
    model = mlp()
    x = randn(7, 5, seed=42)
    scores = randn(8, seed=43)
    kw = dict(target=1, k_values=[0, 2, 5, 8], random_orders=4)
    a = ablate_neurons(model, "act", x, scores, seed=11, **kw)
    assert a.random_drop.shape == (4, 7, 4)
    assert a.random_mean.shape == a.random_std.shape == (4,)
    assert a.mean.shape == a.median.shape == (4,) and a.drop.shape == (7, 4)
    b = ablate_neurons(model, "act", x, scores, seed=11, **kw)
    assert torch.equal(a.random_drop, b.random_drop) and torch.equal(a.drop, b.drop)
    c = ablate_neurons(model, "act", x, scores, seed=12, **kw)
    assert not torch.equal(a.random_drop, c.random_drop)
    chunked = ablate_neurons(model, "act", x, scores, seed=11, batch_size=3, **kw)
    torch.testing.assert_close(chunked.drop, a.drop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.random_drop, a.random_drop, rtol=1e-12, atol=1e-12)
    assert torch.equal(a.random_drop[..., 0], torch.zeros(4, 7, dtype=DT))
    # std over orders of each order's mean curve
    torch.testing.assert_close(a.random_std, a.random_drop.mean(1).std(0, correction=0))
    assert ablate_neurons(model, "act", x, scores, target=1).random_drop is None


def test_reference_mode():
    model = mlp()
    x = randn(5, 5, seed=44)
    target = torch.tensor([2, 0, 1, 1, 0])
    scores = randn(5, 8, seed=45)
    same = ablate_neurons(
        model, "act", x, scores, target=target, mode="reference", baselines=x, random_orders=2
    )
    assert torch.equal(same.drop, torch.zeros_like(same.drop))
    assert torch.equal(same.random_drop, torch.zeros_like(same.random_drop))

    ref = randn(1, 5, seed=46)  # one reference for every example
    curves = ablate_neurons(
        model, "act", x, scores, target=target, mode="reference", baselines=ref, k_values=[3]
    )
    a = LayerActivation(model, "act").attribute(x)
    a_ref = LayerActivation(model, "act").attribute(ref)
    top3 = scores.argsort(dim=1, descending=True)[:, :3]
    w = model.out.weight.detach()[target]
    want = (w * (a - a_ref)).gather(1, top3).sum(1)
    torch.testing.assert_close(curves.drop[:, 0], want, rtol=1e-12, atol=1e-12)
    # baselines=None with mode="reference" is the zero input
    zero = ablate_neurons(model, "act", x, scores, target=target, mode="reference")
    explicit = ablate_neurons(
        model, "act", x, scores, target=target, mode="reference", baselines=0.0
    )
    assert torch.equal(zero.drop, explicit.drop)


def _cnn_after_conv(model: SmallCNN, h: torch.Tensor) -> torch.Tensor:
    return model.fc(model.pool(torch.relu(h)).flatten(1))


@pytest.mark.parametrize("shared", [False, True])
def test_channel_ablation_on_a_cnn(shared):
    model = cnn()
    x = randn(4, 2, 6, 6, seed=47)
    target = torch.tensor([0, 2, 1, 0])
    scores = randn(4, seed=48) if shared else randn(4, 4, seed=48)
    curves = ablate_neurons(model, "conv", x, scores, target=target, random_orders=2)
    assert curves.level == "channel" and curves.n_neurons == 4
    assert curves.k_values.tolist() == [0, 1, 2, 3, 4]
    h = LayerActivation(model, "conv").attribute(x)
    order = scores.expand(4, 4).argsort(dim=1, descending=True)
    y0 = _cnn_after_conv(model, h).gather(1, target[:, None]).squeeze(1)
    for k in range(5):
        keep = torch.ones(4, 4, dtype=DT)
        keep.scatter_(1, order[:, :k], 0.0)
        yk = _cnn_after_conv(model, h * keep[:, :, None, None]).gather(1, target[:, None])
        torch.testing.assert_close(
            curves.drop[:, k], (y0 - yk.squeeze(1)).detach(), rtol=1e-12, atol=1e-12
        )
    # all channels gone: same output whatever the order
    torch.testing.assert_close(curves.random_drop[..., -1], curves.drop[:, -1].expand(2, 4))
    # predictions and flips are recorded for a (N, classes) output
    assert curves.prediction.shape == (4, 5)
    assert torch.equal(curves.prediction[:, 0], model(x).argmax(1))
    flips = curves.ablations_to_flip()
    assert flips.shape == (4,)
    json.dumps(curves.to_dict())


def test_unit_level_ablation_on_conv_output():
    model = cnn()
    x = randn(3, 2, 6, 6, seed=49)
    scores = randn(3, 4, 4, 4, seed=50)
    curves = ablate_neurons(model, "conv", x, scores, target=1, k_values=[0, 10, 64])
    assert curves.level == "unit" and curves.n_neurons == 64
    h = LayerActivation(model, "conv").attribute(x)
    top = scores.reshape(3, -1).argsort(dim=1, descending=True)[:, :10]
    keep = torch.ones(3, 64, dtype=DT).scatter_(1, top, 0.0).reshape(3, 4, 4, 4)
    want = _cnn_after_conv(model, h)[:, 1] - _cnn_after_conv(model, h * keep)[:, 1]
    torch.testing.assert_close(curves.drop[:, 1], want.detach(), rtol=1e-12, atol=1e-12)


def test_area_under_curve_and_to_dict():
    model = mlp()
    x = randn(4, 5, seed=51)
    curves = ablate_neurons(model, "act", x, randn(8, seed=52), target=0, k_values=[0, 2, 8])
    m = curves.mean
    want = ((m[0] + m[1]) / 2 * 2 + (m[1] + m[2]) / 2 * 6) / 8
    assert math.isclose(curves.area_under_curve(), float(want), rel_tol=1e-12)
    per_ex = curves.area_under_curve("examples")
    assert per_ex.shape == (4,)
    assert math.isclose(float(per_ex.mean()), float(want), rel_tol=1e-12)
    d = json.loads(json.dumps(curves.to_dict()))
    assert d["k_values"] == [0, 2, 8] and len(d["drop"]) == 4 and d["random_mean"] is None
    assert "drop" not in curves.to_dict(per_example=False)
    with pytest.raises(ValueError, match="random"):
        curves.area_under_curve("random")
    one = ablate_neurons(model, "act", x, randn(8, seed=52), target=0, k_values=[3])
    assert torch.equal(one.area_under_curve("examples"), one.drop[:, 0])


def test_tuple_output_layer_and_additional_args():
    torch.manual_seed(0)
    tn = TupleNet().to(DT)
    x = randn(3, 4, seed=53)
    scores = randn(3, 6, seed=54)
    curves = ablate_neurons(tn, "split", x, scores, target=1, layer_output_index=1, k_values=[6])
    h = tn.lin(x)
    torch.testing.assert_close(curves.drop[:, 0], (tn.out(3 * h) - tn.out(h))[:, 1].detach())

    net = TwoInputNet(nn.Tanh()).to(DT)
    a, b, scale = randn(4, 5, seed=55), randn(4, 4, seed=56), randn(4, 3, seed=57)
    full = ablate_neurons(
        net, "act_a", (a, b), randn(6, seed=58), target=2, additional_forward_args=scale
    )
    chunked = ablate_neurons(
        net,
        "act_a",
        (a, b),
        randn(6, seed=58),
        target=2,
        additional_forward_args=scale,
        batch_size=3,
    )
    torch.testing.assert_close(chunked.drop, full.drop, rtol=1e-12, atol=1e-12)


def test_ablation_errors():
    model = mlp()
    x = randn(6, 5, seed=60)
    with pytest.raises(AttributionError, match=r"\(6, 8\).*\(8,\)"):
        ablate_neurons(model, "act", x, randn(6, 7, seed=1), target=0)
    conv = cnn()
    xc = randn(3, 2, 6, 6, seed=61)
    with pytest.raises(AttributionError, match=r"\(3, 4, 4, 4\).*\(4, 4, 4\).*\(3, 4\).*\(4,\)"):
        ablate_neurons(conv, "conv", xc, randn(3, 5, seed=1), target=0)
    with pytest.raises(AttributionError, match="k=9 but layer 'act' has only 8 neurons"):
        ablate_neurons(model, "act", x, randn(8, seed=1), target=0, k_values=[1, 9])
    with pytest.raises(AttributionError, match="only 4 channels"):
        ablate_neurons(conv, "conv", xc, randn(4, seed=1), target=0, k_values=[5])
    with pytest.raises(AttributionError, match="non-negative"):
        ablate_neurons(model, "act", x, randn(8, seed=1), target=0, k_values=[-1])
    with pytest.raises(AttributionError, match="NaN"):
        ablate_neurons(model, "act", x, torch.full((8,), math.nan), target=0)
    with pytest.raises(AttributionError, match="mode='reference'"):
        ablate_neurons(model, "act", x, randn(8, seed=1), target=0, baselines=x)
    with pytest.raises(AttributionError, match="mode"):
        ablate_neurons(model, "act", x, randn(8, seed=1), target=0, mode="mean")
    with pytest.raises(AttributionError, match="target"):
        ablate_neurons(model, "act", x, randn(8, seed=1))  # 3 outputs, no target
    with pytest.raises(AttributionError, match="target has 2 entries"):
        ablate_neurons(model, "act", x, randn(8, seed=1), target=[0, 1], batch_size=4)
    # layer errors come from _layers
    with pytest.raises(AttributionError, match="not in the model"):
        ablate_neurons(model, "nope", x, randn(8, seed=1), target=0)
    twice = TwiceNet().to(DT)
    xt = randn(2, 4, seed=62)
    with pytest.raises(AttributionError, match="ran 2 times"):
        ablate_neurons(twice, "lin", xt, randn(4, seed=1))
    with pytest.raises(AttributionError, match="never reached"):
        ablate_neurons(twice, twice.unused, xt, randn(4, seed=1))
    with pytest.raises(AttributionError, match="layer_output_index"):
        ablate_neurons(TupleNet().to(DT), "split", xt, randn(6, seed=1), target=0)


def test_ties_are_broken_by_seed_not_by_position():
    model = mlp()
    x = randn(3, 5, seed=63)
    flat = torch.zeros(8, dtype=DT)  # every neuron tied
    runs = [ablate_neurons(model, "act", x, flat, target=0, k_values=[3], seed=s) for s in range(6)]
    assert torch.equal(
        runs[0].drop, ablate_neurons(model, "act", x, flat, target=0, k_values=[3]).drop
    )
    assert len({tuple(r.drop[:, 0].tolist()) for r in runs}) > 1
