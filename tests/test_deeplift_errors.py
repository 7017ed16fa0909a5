"""DeepLift never answers silently wrong: ops without a rule and bad input are clear errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuron_importance import AttributionError, DeepLift, UnsupportedOperationError

RULES = ["rescale", "reveal_cancel", "genomics_default"]


class Square(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        h = self.lin(x)
        return (h * h).sum(dim=1, keepdim=True)  # product of two input-dependent tensors


class Sorted(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values[:, :1]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(4, 4)
        self.k = nn.Linear(4, 4)

    def forward(self, x):  # x: (N, T, 4)
        scores = self.q(x) @ self.k(x).transpose(1, 2)
        return scores.mean(dim=(1, 2)).unsqueeze(1)


class LayerNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.norm(self.lin(x)))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "model,shape,op",
    [(Square(), (2, 3), "mul"), (Sorted(), (2, 3), "sort"), (Attention(), (2, 5, 4), "matmul"),
     (LayerNormNet(), (2, 3), "layer_norm")],
)
def test_op_without_rule_names_op_and_line(model, shape, op, rule):
    if rule == "genomics_default" and op in ("sort",):
        pytest.skip("genomics_default needs a dense/conv layer first; covered elsewhere")
    with pytest.raises(UnsupportedOperationError) as info:
        DeepLift(model, rule=rule).attribute(torch.randn(*shape))
    err = info.value
    assert err.op == op
    assert __file__ in err.where and "in forward" in err.where, err.where
    assert op in str(err)


def test_gradient_fallback_is_opt_in_and_warns():
    model = Square()
    x = torch.randn(4, 3)
    with pytest.warns(UserWarning, match="gradient"):
        attr = DeepLift(model, unsupported="gradient").attribute(x)
    assert attr.shape == x.shape and torch.isfinite(attr).all()


def test_softmax_inside_the_network_is_an_error():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.softmax(self.a(x), dim=1))

    with pytest.raises(UnsupportedOperationError, match="softmax"):
        DeepLift(Inner()).attribute(torch.randn(2, 3), target=0)


def test_softmax_output_raw_mode_is_an_error():
    model = nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=1))
    with pytest.raises(UnsupportedOperationError, match="logit"):
        DeepLift(model, output="raw").attribute(torch.randn(2, 3), target=0)


def test_genomics_default_without_preceding_layer():
    model = nn.Sequential(nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(UnsupportedOperationError, match="genomics_default"):
        DeepLift(model, rule="genomics_default").attribute(torch.randn(2, 3))


def test_functional_dropout_in_training_mode_is_an_error():
    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x):
            return self.lin(F.dropout(x, 0.5, training=True))

    with pytest.raises(UnsupportedOperationError, match="dropout"):
        DeepLift(Drop()).attribute(torch.randn(2, 3))


def test_training_mode_model_warns_switches_and_restores():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(4, 2))
    model.train()
    x = torch.randn(5, 3)
    with pytest.warns(UserWarning, match="training mode"):
        a1 = DeepLift(model).attribute(x, target=1)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    a2 = DeepLift(model).attribute(x, target=1)
    torch.testing.assert_close(a1, a2)


def test_bad_inputs_have_clear_messages():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(4, 3)
    with pytest.raises(AttributionError, match=r"out of range.*2 classes"):
        DeepLift(model).attribute(x, target=5)
    with pytest.raises(AttributionError, match=r"target.*example 1"):
        DeepLift(model).attribute(x, target=torch.tensor([0, -1, 0, 0]))
    with pytest.raises(AttributionError, match=r"baselines\[0\] of shape \(2, 3\).*\(4, 3\)"):
        DeepLift(model).attribute(x, baselines=torch.zeros(2, 3), target=0)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(AttributionError, match="NaN.*example 2"):
        DeepLift(model).attribute(bad, target=0)
    with pytest.raises(AttributionError, match=r"rejected inputs of shape \(4, 5\)"):
        DeepLift(model).attribute(torch.randn(4, 5), target=0)
    with pytest.raises(AttributionError, match="pass target"):
        DeepLift(model).attribute(x)
    with pytest.raises(ValueError, match="unknown DeepLIFT rule"):
        DeepLift(model, rule="revealcancel")


def test_torchscript_is_refused_with_a_reason():
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 1)))
    with pytest.raises(AttributionError, match="TorchScript"):
        DeepLift(scripted)


def test_completeness_warning_names_worst_example():
    model = Square()
    x = torch.randn(4, 3, dtype=torch.float64)
    model.double()
    with pytest.warns(UserWarning) as record:
        DeepLift(model, unsupported="gradient").attribute(x)
    messages = " ".join(str(w.message) for w in record)
    assert "worst example" in messages


def test_user_tensors_untouched_and_no_grad_context():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(3, 3)
    before = x.clone()
    with torch.no_grad():
        attr = DeepLift(model, rule="reveal_cancel").attribute(x)
    assert torch.equal(x, before) and x.grad is None and attr.requires_grad is False
    assert all(p.grad is None for p in model.parameters())


def test_no_warnings_on_a_clean_call():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeepLift(model).attribute(torch.randn(3, 3), target=0)


def test_inplace_through_a_view_then_reuse_is_an_error():
    class ViewInplace(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.out = nn.Linear(4, 1)

        def forward(self, x):
            h = self.lin(x)
            h[:, :2].relu_()  # mutates h through a view
            return self.out(h)

    with pytest.raises(UnsupportedOperationError, match="in place through a view"):
        DeepLift(ViewInplace()).attribute(torch.randn(3, 4))


def test_inplace_add_residual_matches_out_of_place():
    torch.manual_seed(2)
    lin1, lin2 = nn.Linear(4, 4).double(), nn.Linear(4, 2).double()

    class InplaceRes(nn.Module):
        def forward(self, x):
            h = lin1(x)
            h += x
            return lin2(torch.relu(h))

    class Res(nn.Module):
        def forward(self, x):
            return lin2(torch.relu(lin1(x) + x))

    x = torch.randn(3, 4, dtype=torch.float64)
    for rule in RULES[:2]:
        a = DeepLift(InplaceRes(), rule=rule).attribute(x, target=1)
        torch.testing.assert_close(a, DeepLift(Res(), rule=rule).attribute(x, target=1))
