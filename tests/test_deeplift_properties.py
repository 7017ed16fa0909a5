"""Properties of DeepLift on random architectures (hypothesis).

* summation-to-delta to 1e-6 in float64 for every rule and any baseline, through max/avg
  pooling, eval batch norm, eval dropout, residual additions, concatenation, flatten,
  sigmoid/tanh/ReLU/LeakyReLU/softplus/GELU/SiLU/ELU and a softmax output (to the logits);
* implementation invariance between spellings: modules, functions, tensor methods and a
  reused module instance give the same numbers;
* linearity in the output and symmetry.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from neuron_importance import DeepLift

RULES = ["rescale", "reveal_cancel", "genomics_default"]
ACTS = ["relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "silu", "elu"]
STYLES = ["module", "function", "method", "reused"]

_FUNCTIONS = {
    "relu": torch.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.1), "sigmoid": torch.sigmoid,
    "tanh": torch.tanh, "softplus": F.softplus, "gelu": F.gelu, "silu": F.silu, "elu": F.elu,
}
_METHODS = {
    "relu": lambda x: x.relu(), "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "sigmoid": lambda x: x.sigmoid(), "tanh": lambda x: x.tanh(), "softplus": F.softplus,
    "gelu": F.gelu, "silu": F.silu, "elu": F.elu,
}
_MODULES = {
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh, "softplus": nn.Softplus, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
}


class Act(nn.Module):
    """One nonlinearity, spelled in one of four ways."""

    shared: dict[str, nn.Module] = {}

    def __init__(self, kind: str, style: str):
        super().__init__()
        self.kind, self.style = kind, style
        self.mod = _MODULES[kind]() if style == "module" else None

    def forward(self, x):
        if self.style == "module":
            return self.mod(x)
        if self.style == "function":
            return _FUNCTIONS[self.kind](x)
        if self.style == "method":
            return _METHODS[self.kind](x)
        return self.shared_module(x)

    @property
    def shared_module(self):
        # One instance per kind, reused by every Act of this kind in the process.
        return Act.shared.setdefault(self.kind, _MODULES[self.kind]())


class RandomNet(nn.Module):
    """conv stem (optional) → dense trunk with optional residual and concat → head."""

    def __init__(self, spec: dict, styles: list[str]):
        super().__init__()
        s = iter(styles)
        self.spec = spec
        c, length = 3, 12
        self.conv = spec["conv"]
        if self.conv:
            self.c1 = nn.Conv1d(c, 4, 3, padding=1)
            self.bn = nn.BatchNorm1d(4) if spec["bn"] else None
            self.a1 = Act(spec["acts"][0], next(s))
            self.pool = spec["pool"]
            self.c2 = nn.Conv1d(4, 3, 3)
            self.a2 = Act(spec["acts"][1], next(s))
            width = 3 * ((length // 2) - 2) if self.pool != "none" else 3 * (length - 2)
        else:
            width = c * length
        h = spec["hidden"]
        self.l1 = nn.Linear(width, h)
        self.a3 = Act(spec["acts"][2], next(s))
        self.drop = nn.Dropout(0.3)
        self.res = nn.Linear(h, h) if spec["residual"] else None
        self.a4 = Act(spec["acts"][3], next(s))
        self.cat = nn.Linear(h, 2) if spec["concat"] else None
        self.head = nn.Linear(h + (2 if spec["concat"] else 0), 3)
        self.softmax = spec["softmax"]
        if self.bn is not None if self.conv else False:
            with torch.no_grad():
                self.bn.running_mean.normal_()
                self.bn.running_var.uniform_(0.5, 2)
                self.bn.weight.normal_()

    def forward(self, x, logits_only: bool = False):
        if self.conv:
            x = self.c1(x)
            if self.bn is not None:
                x = self.bn(x)
            x = self.a1(x)
            if self.pool == "max":
                x = F.max_pool1d(x, 2)
            elif self.pool == "avg":
                x = F.avg_pool1d(x, 2)
            x = self.a2(self.c2(x))
        x = torch.flatten(x, 1)
        x = self.drop(self.a3(self.l1(x)))
        if self.res is not None:
            x = x + self.a4(self.res(x))
        if self.cat is not None:
            x = torch.cat([x, self.cat(x)], dim=1)
        z = self.head(x)
        if self.softmax and not logits_only:
            return torch.softmax(z, dim=1)
        return z


spec_strategy = st.fixed_dictionaries({
    "conv": st.booleans(),
    "bn": st.booleans(),
    "pool": st.sampled_from(["max", "avg", "none"]),
    "acts": st.lists(st.sampled_from(ACTS), min_size=4, max_size=4),
    "hidden": st.integers(3, 8),
    "residual": st.booleans(),
    "concat": st.booleans(),
    "softmax": st.booleans(),
})


def _inputs(spec, seed, baseline_kind):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 12)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if baseline_kind == "zeros":
        b = torch.zeros_like(x)
    elif baseline_kind == "random":
        b = torch.randn(*shape, generator=g, dtype=torch.float64)
    else:  # one shared baseline broadcast to the batch
        b = torch.randn(1, *shape[1:], generator=g, dtype=torch.float64)
    return x, b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=spec_strategy, seed=st.integers(0, 10_000),
       baseline=st.sampled_from(["zeros", "random", "broadcast"]),
       rule=st.sampled_from(RULES), styles=st.lists(st.sampled_from(STYLES), min_size=4,
                                                    max_size=4))
def test_summation_to_delta_random_architectures(spec, seed, baseline, rule, styles):
    torch.manual_seed(seed)
    net = RandomNet(spec, styles).double().eval()
    x, b = _inputs(spec, seed, baseline)
    target = seed % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CompletenessWarning would fail the test
        attr, delta = DeepLift(net, rule=rule).attribute(x, b, target=target,
                                                         return_convergence_delta=True)
    with torch.no_grad():
        true = (net(x, logits_only=True)[:, target]
                - net(b.expand_as(x), logits_only=True)[:, target])
    assert attr.shape == x.shape
    assert torch.allclose(attr.sum(dim=(1, 2)), true, atol=1e-6, rtol=0)
    assert delta.abs().max() < 1e-6


@settings(max_examples=25, deadline=None)
@given(spec=spec_strategy, seed=st.integers(0, 10_000), rule=st.sampled_from(RULES))
def test_spellings_are_interchangeable(spec, seed, rule):
    """Module, function, method and reused-module spellings of one net give equal numbers."""
    results = []
    for style in STYLES:
        torch.manual_seed(seed)  # same weights for every spelling
        net = RandomNet(spec, [style] * 4).double().eval()
        x, b = _inputs(spec, seed, "random")
        results.append(DeepLift(net, rule=rule).attribute(x, b, target=1))
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_linearity_in_the_output(rule):
    torch.manual_seed(3)
    base = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.Tanh(),
                         nn.Linear(4, 3)).double()

    class Combo(nn.Module):
        def forward(self, x):
            z = base(x)
            return (2.0 * z[:, 0] - 0.5 * z[:, 2]).unsqueeze(1)

    x = torch.randn(6, 5, dtype=torch.float64)
    b = torch.randn(6, 5, dtype=torch.float64)
    dl = DeepLift(base, rule=rule)
    expected = 2.0 * dl.attribute(x, b, target=0) - 0.5 * dl.attribute(x, b, target=2)
    got = DeepLift(Combo(), rule=rule).attribute(x, b, target=0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_symmetry(rule):
    """Swapping two inputs of a function symmetric in them swaps their contributions."""
    torch.manual_seed(4)
    lin = nn.Linear(4, 5).double()
    with torch.no_grad():
        lin.weight[:, 1] = lin.weight[:, 0]
    net = nn.Sequential(lin, nn.Sigmoid(), nn.Linear(5, 1)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    x[:, 1] = x[:, 0]
    attr = DeepLift(net, rule=rule).attribute(x, torch.zeros_like(x))
    torch.testing.assert_close(attr[:, 0], attr[:, 1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_float32_completeness(rule):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                        nn.Linear(8 * 5, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    x, b = torch.randn(16, 3, 12), torch.randn(16, 3, 12)
    attr, delta = DeepLift(net, rule=rule).attribute(x, b, target=2,
                                                     return_convergence_delta=True)
    assert attr.dtype == torch.float32
    with torch.no_grad():
        true = net(x)[:, 2] - net(b)[:, 2]
    assert torch.allclose(attr.sum(dim=(1, 2)), true, atol=1e-4)


@pytest.mark.parametrize("rule", RULES)
def test_shared_reference_row_through_batch_sized_reshapes(rule):
    """A batch-shared reference is kept as one row only through per-example ops; reshapes
    that name the batch size (``view(x.size(0), -1)``) get the full batch."""
    torch.manual_seed(7)
    conv, lin = nn.Conv1d(2, 3, 3).double(), nn.Linear(3 * 6, 2).double()

    class ViewNet(nn.Module):
        def forward(self, x):
            h = torch.relu(conv(x))
            return lin(h.view(h.size(0), -1))

    class FlattenNet(nn.Module):
        def forward(self, x):
            return lin(nn.Flatten()(torch.relu(conv(x))))

    x = torch.randn(4, 2, 8, dtype=torch.float64)
    for baseline in (None, torch.full((1, 2, 8), 0.3, dtype=torch.float64)):
        a, d = DeepLift(ViewNet(), rule=rule).attribute(x, baseline, target=1,
                                                         return_convergence_delta=True)
        b = DeepLift(FlattenNet(), rule=rule).attribute(x, baseline, target=1)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert d.abs().max() < 1e-10
