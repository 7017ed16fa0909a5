"""DeepLiftShap: Captum parity, per-input reference sets, chunking, summation, errors, genomics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import DT, TwoInputNet, randn
from torch import nn

from neuron_importance import AttributionError, DeepLift, DeepLiftShap
from neuron_importance.attribution.deeplift import SplitContributions
from neuron_importance.genomics.onehot import one_hot_encode
from neuron_importance.genomics.shuffle import dinuc_shuffle_references

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks"),
]

ATOL = 1e-10
RULES = ["rescale", "reveal_cancel", "genomics_default"]


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(),
        nn.Linear(10, 8), nn.Sigmoid(),
        nn.Linear(8, 3),
    ).to(DT).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 6), nn.ReLU(),
        nn.Linear(6, 3),
    ).to(DT).eval()


NETS = {"mlp": (_mlp, (6,)), "cnn": (_cnn, (2, 6, 6))}
N, R = 4, 3


def _targets(out_idx: torch.Tensor | int, n: int) -> torch.Tensor:
    if isinstance(out_idx, int):
        return torch.full((n,), out_idx)
    return out_idx


def _t(model: nn.Module, x, target, extra=()) -> torch.Tensor:
    xs = x if isinstance(x, tuple) else (x,)
    with torch.no_grad():
        out = model(*xs, *extra)
    return out.gather(1, _targets(target, out.shape[0]).view(-1, 1)).squeeze(1)


# ---------------------------------------------------------------- Captum parity


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("target", [1, torch.tensor([0, 2, 1, 1])], ids=["int", "tensor"])
def test_shared_references_match_captum(net: str, target) -> None:
    make, shape = NETS[net]
    model = make()
    x = randn(N, *shape, seed=1)
    refs = randn(R, *shape, seed=2)
    ours, d_ours = DeepLiftShap(model, rule="rescale").attribute(
        x, refs, target=target, return_convergence_delta=True)
    theirs, d_theirs = captum_attr.DeepLiftShap(model).attribute(
        x, refs, target=target, return_convergence_delta=True)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs.detach(), atol=ATOL, rtol=0)
    # Captum reports one delta per (input, reference) pair, inputs repeat-interleaved; ours is
    # per input, the mean over its references.
    assert d_theirs.shape == (N * R,)
    torch.testing.assert_close(d_ours, d_theirs.detach().view(N, R).mean(1), atol=ATOL, rtol=0)
    assert d_ours.shape == (N,) and d_ours.abs().max() < ATOL


def test_tuple_inputs_match_captum() -> None:
    torch.manual_seed(3)
    model = TwoInputNet(nn.Tanh()).to(DT).eval()
    a, b = randn(N, 5, seed=3), randn(N, 4, seed=4)
    scale = randn(N, 3, seed=5).abs() + 0.5
    refs = (randn(R, 5, seed=6), randn(R, 4, seed=7))
    target = torch.tensor([2, 0, 1, 2])
    ours, d_ours = DeepLiftShap(model).attribute(
        (a, b), refs, target=target, additional_forward_args=(scale,),
        return_convergence_delta=True)
    theirs, d_theirs = captum_attr.DeepLiftShap(model).attribute(
        (a, b), refs, target=target, additional_forward_args=(scale,),
        return_convergence_delta=True)
    assert isinstance(ours, tuple) and len(ours) == 2
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(d_ours, d_theirs.detach().view(N, R).mean(1), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- per-input references


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("net", sorted(NETS))
def test_per_input_references_average_deeplift(net: str, rule: str) -> None:
    make, shape = NETS[net]
    model = make()
    x = randn(N, *shape, seed=8)
    refs = randn(N, R, *shape, seed=9)
    target = torch.tensor([0, 1, 2, 0])
    got, delta = DeepLiftShap(model, rule=rule).attribute(
        x, refs, target=target, return_convergence_delta=True)
    dl = DeepLift(model, rule=rule)
    expected = torch.stack(
        [dl.attribute(x, refs[:, r], target=target) for r in range(R)]).mean(0)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    # Summation: Σ_i C̄_i = t(x) − mean_r t(ref_r), per example.
    t_refs = torch.stack([_t(model, refs[:, r], target) for r in range(R)], 1).mean(1)
    total = got.reshape(N, -1).sum(1)
    torch.testing.assert_close(total, _t(model, x, target) - t_refs, atol=1e-10, rtol=0)
    assert delta.abs().max() < 1e-10


@pytest.mark.parametrize("rule", RULES)
def test_shared_references_equal_expanded_per_input(rule: str) -> None:
    model = _mlp()
    x = randn(N, 6, seed=10)
    refs = randn(R, 6, seed=11)
    shared = DeepLiftShap(model, rule=rule).attribute(x, refs, target=2)
    per_input = DeepLiftShap(model, rule=rule).attribute(
        x, refs.unsqueeze(0).expand(N, R, 6).clone(), target=2)
    torch.testing.assert_close(shared, per_input, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- chunking


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("split", [False, True])
def test_chunking_does_not_change_results(rule: str, split: bool) -> None:
    model = _cnn()
    x = randn(N, 2, 6, 6, seed=12)
    refs = randn(N, R, 2, 6, 6, seed=13)
    target = torch.tensor([2, 1, 0, 2])

    def run(**kw):
        return DeepLiftShap(model, rule=rule, **kw.pop("init", {})).attribute(
            x, refs, target=target, split=split, return_convergence_delta=True, **kw)

    ref_attr, ref_delta = run(internal_batch_size=N * R)  # one chunk
    # 1, 3 (does not divide N·R = 12 evenly with 5), auto, and a tiny memory cap (chunks of 1).
    for kw in ({"internal_batch_size": 1}, {"internal_batch_size": 3},
               {"internal_batch_size": 5}, {"internal_batch_size": None}, {},
               {"init": {"max_memory_mb": 1e-6}}):
        attr, delta = run(**kw)
        if split:
            assert isinstance(attr, SplitContributions)
            for a, b in ((attr.positive, ref_attr.positive), (attr.negative, ref_attr.negative)):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        else:
            torch.testing.assert_close(attr, ref_attr, atol=1e-12, rtol=0)
        torch.testing.assert_close(delta, ref_delta, atol=1e-12, rtol=0)


def test_tiny_memory_cap_runs_one_pair_per_chunk(monkeypatch) -> None:
    model = _mlp()
    x = randn(N, 6, seed=14)
    refs = randn(R, 6, seed=15)
    explainer = DeepLiftShap(model, max_memory_mb=1e-6)
    sizes: list[int] = []
    original = explainer._run_pairs

    def spy(xs, refs_, ii, *args):
        sizes.append(len(ii))
        return original(xs, refs_, ii, *args)

    monkeypatch.setattr(explainer, "_run_pairs", spy)
    got = explainer.attribute(x, refs, target=0)
    assert sizes == [1] * (N * R)
    expected = DeepLiftShap(model).attribute(x, refs, target=0, internal_batch_size=N * R)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- summation, split


@pytest.mark.parametrize("rule", RULES)
def test_split_parts_sum_to_total(rule: str) -> None:
    model = _cnn()
    x = randn(N, 2, 6, 6, seed=16)
    refs = randn(R, 2, 6, 6, seed=17)
    explainer = DeepLiftShap(model, rule=rule)
    parts = explainer.attribute(x, refs, target=1, split=True)
    total = explainer.attribute(x, refs, target=1)
    assert isinstance(parts, SplitContributions)
    torch.testing.assert_close(parts.positive + parts.negative, total, atol=1e-12, rtol=0)
    torch.testing.assert_close(parts.total, total, atol=1e-12, rtol=0)
    # The parts are the averages of DeepLift's split parts.
    dl = DeepLift(model, rule=rule)
    singles = [dl.attribute(x, refs[r], target=1, split=True) for r in range(R)]
    torch.testing.assert_close(
        parts.positive, torch.stack([s.positive for s in singles]).mean(0), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        parts.negative, torch.stack([s.negative for s in singles]).mean(0), atol=1e-12, rtol=0)


def test_split_tuple_inputs() -> None:
    torch.manual_seed(3)
    model = TwoInputNet(nn.Tanh()).to(DT).eval()
    a, b = randn(N, 5, seed=18), randn(N, 4, seed=19)
    scale = torch.ones(N, 3, dtype=DT)
    refs = (randn(N, R, 5, seed=20), randn(N, R, 4, seed=21))
    explainer = DeepLiftShap(model, rule="reveal_cancel")
    parts = explainer.attribute((a, b), refs, target=0, additional_forward_args=scale,
                                split=True)
    total = explainer.attribute((a, b), refs, target=0, additional_forward_args=scale)
    for p, q, t in zip(parts.positive, parts.negative, total):
        torch.testing.assert_close(p + q, t, atol=1e-12, rtol=0)
    t_refs = torch.stack(
        [_t(model, (refs[0][:, r], refs[1][:, r]), 0, (scale,)) for r in range(R)], 1).mean(1)
    torch.testing.assert_close(total[0].sum(1) + total[1].sum(1),
                               _t(model, (a, b), 0, (scale,)) - t_refs, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- errors


def test_wrong_reference_shape_names_expected_shapes() -> None:
    model = _mlp()
    x = randn(N, 6, seed=22)
    with pytest.raises(AttributionError, match=r"\(R, 6\).*\(4, R, 6\)"):
        DeepLiftShap(model).attribute(x, randn(R, 5, seed=0), target=0)
    with pytest.raises(AttributionError, match=r"\(R, 6\).*\(4, R, 6\)"):
        DeepLiftShap(model).attribute(x, randn(N + 1, R, 6, seed=0), target=0)


def test_empty_reference_set_raises() -> None:
    model = _mlp()
    x = randn(N, 6, seed=23)
    with pytest.raises(AttributionError, match="no references"):
        DeepLiftShap(model).attribute(x, torch.zeros(0, 6, dtype=DT), target=0)
    with pytest.raises(AttributionError, match="no references"):
        DeepLiftShap(model).attribute(x, torch.zeros(N, 0, 6, dtype=DT), target=0)
    with pytest.raises(AttributionError, match="needs a set of references"):
        DeepLiftShap(model).attribute(x, None, target=0)


def test_target_of_wrong_length_raises() -> None:
    model = _mlp()
    x = randn(N, 6, seed=24)
    refs = randn(R, 6, seed=25)
    with pytest.raises(AttributionError, match=f"3 entries for a batch of {N}"):
        DeepLiftShap(model).attribute(x, refs, target=torch.tensor([0, 1, 2]))
    with pytest.raises(AttributionError, match=f"{N + 1} entries for a batch of {N}"):
        DeepLiftShap(model).attribute(x, refs, target=[0] * (N + 1))


def test_target_errors_name_the_input_example_not_a_pair() -> None:
    # Targets are validated against the whole batch, not inside a chunk of pairs (where the
    # example index would be a pair index and the output shape that of the chunk).
    model = _mlp()
    x = randn(N, 6, seed=28)
    refs = randn(R, 6, seed=29)
    with pytest.raises(AttributionError, match="target 5 for example 3 is out of range"):
        DeepLiftShap(model).attribute(x, refs, target=torch.tensor([0, 1, 2, 5]))
    with pytest.raises(AttributionError, match=r"output has shape \(4, 3\)"):
        DeepLiftShap(model).attribute(x, refs, internal_batch_size=1)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_invalid_internal_batch_size_raises(bad) -> None:
    model = _mlp()
    x = randn(N, 6, seed=30)
    with pytest.raises(AttributionError, match="internal_batch_size must be a positive int"):
        DeepLiftShap(model).attribute(x, randn(R, 6, seed=31), target=0,
                                      internal_batch_size=bad)


def test_training_mode_model_warns_once_and_is_restored() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).to(DT)
    x = randn(N, 6, seed=32)
    refs = randn(R, 6, seed=33)
    model.eval()
    expected = DeepLiftShap(model).attribute(x, refs, target=1)
    model.train()
    with pytest.warns(UserWarning, match="DeepLiftShap: the model is in training mode") as rec:
        got = DeepLiftShap(model).attribute(x, refs, target=1, internal_batch_size=1)
    assert sum("training mode" in str(w.message) for w in rec) == 1
    assert model.training and model[2].training
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_tuple_reference_count_mismatch_raises() -> None:
    torch.manual_seed(3)
    model = TwoInputNet(nn.Tanh()).to(DT).eval()
    a, b = randn(N, 5, seed=26), randn(N, 4, seed=27)
    scale = torch.ones(N, 3, dtype=DT)
    with pytest.raises(AttributionError, match="1 reference sets for 2 inputs"):
        DeepLiftShap(model).attribute((a, b), (randn(R, 5, seed=0),), target=0,
                                      additional_forward_args=scale)
    with pytest.raises(AttributionError, match="same number of references"):
        DeepLiftShap(model).attribute((a, b), (randn(R, 5, seed=0), randn(R + 1, 4, seed=1)),
                                      target=0, additional_forward_args=scale)


# ---------------------------------------------------------------- genomics


class GenomicsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(4, 8, 5)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(8, 8, 3)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(8, 6)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(self.relu3(self.fc1(h.mean(dim=2))))


def _random_dna(n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]


@pytest.mark.parametrize("rule", ["genomics_default", "rescale"])
def test_dinucleotide_shuffled_references_on_genomics_net(rule: str) -> None:
    torch.manual_seed(7)
    model = GenomicsNet().to(DT).eval()
    n, shuffles, length = 3, 5, 30
    x = one_hot_encode(_random_dna(n, length, seed=0)).to(DT)
    refs = dinuc_shuffle_references(x, num_shuffles=shuffles, seed=1)
    assert refs.shape == (n, shuffles, 4, length)
    target = torch.tensor([0, 1, 1])
    attr, delta = DeepLiftShap(model, rule=rule).attribute(
        x, refs, target=target, return_convergence_delta=True)
    assert attr.shape == x.shape
    t_refs = torch.stack([_t(model, refs[:, r], target) for r in range(shuffles)], 1).mean(1)
    torch.testing.assert_close(attr.sum((1, 2)), _t(model, x, target) - t_refs,
                               atol=1e-10, rtol=0)
    assert delta.abs().max() < 1e-10
    # Same as averaging single-reference DeepLIFT over the shuffles.
    dl = DeepLift(model, rule=rule)
    expected = torch.stack(
        [dl.attribute(x, refs[:, r], target=target) for r in range(shuffles)]).mean(0)
    torch.testing.assert_close(attr, expected, atol=1e-12, rtol=0)
    assert attr.abs().sum() > 1e-6
