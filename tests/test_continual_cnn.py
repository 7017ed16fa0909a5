"""The convolutional trunk of the continual-learning benchmarks and NAI on it.

Synthetic 1×12×12 "images" keep these tests fast; the oracles are computed here from forward
hooks (activation moments) and from TotalConductance called directly, independently of NAI's
own walk of the trunk.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from neuron_importance import TotalConductance
from neuron_importance.continual import (
    NAI,
    ContinualCNN,
    ContinualMLP,
    NAIOptions,
    Task,
    TaskData,
    TaskStream,
    TrainConfig,
    run_sequence,
)
from neuron_importance.continual.nai import trunk_unit_layers
from neuron_importance.continual.strategies import _shared, per_example_grads
from neuron_importance.continual.trainer import _config_key, build_model

SHAPE = (1, 12, 12)
N_IN = 144


def small_cnn(**kw) -> ContinualCNN:
    torch.manual_seed(0)
    return ContinualCNN(N_IN, conv=(3, 4), hidden=(5,), head_sizes=(2, 2), image_shape=SHAPE,
                        kernel=3, **kw)


def image_stream(n_tasks: int = 2, n: int = 96, seed: int = 0) -> TaskStream:
    """Two classes per task: a bright 3×3 patch in one of two places (per task)."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        def draw(m: int, t: int = t) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.randint(0, 2, (m,), generator=g)
            x = 0.3 * torch.randn(m, 12, 12, generator=g)
            r = 1 + 5 * t
            for i in range(m):
                c = 1 if y[i] == 0 else 8
                x[i, r:r + 3, c:c + 2] += 2.0
            return x.reshape(m, N_IN), y

        (xtr, ytr), (xva, yva), (xte, yte) = draw(n), draw(n // 4), draw(n // 2)
        tasks.append(Task(t, f"patch {t}", (2 * t, 2 * t + 1), xtr, ytr, xva, yva, xte, yte,
                          ytr + 2 * t, yva + 2 * t, yte + 2 * t))
    return TaskStream("patches", tasks, tuple(range(n_tasks)), shared_head=False,
                      head_sizes=(2,) * n_tasks, n_global_classes=2 * n_tasks)


def test_cnn_trunk_layout_and_errors() -> None:
    model = small_cnn()
    assert [type(m).__name__ for m in model.trunk] == [
        "Unflatten", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
        "Linear", "ReLU"]
    # 12 → conv5 → 8 → pool → 4 → conv5 → 0: too small
    with pytest.raises(ValueError, match="shrinks"):
        ContinualCNN(N_IN, conv=(3, 4), hidden=(5,), image_shape=SHAPE, kernel=5)
    with pytest.raises(ValueError, match="has 144 values, but the inputs have 65"):
        ContinualCNN(65, conv=(3,), image_shape=SHAPE)
    with pytest.raises(ValueError, match="65 input features are no square image"):
        ContinualCNN(65, conv=(3,))
    with pytest.raises(ValueError, match="ContinualMLP"):
        ContinualCNN(N_IN, conv=(), image_shape=SHAPE)
    with pytest.raises(ValueError, match="dropout"):
        ContinualCNN(784, dropout=1.0)
    # the 28×28 default: two 5×5 blocks leave 32 channels of 4×4
    big = ContinualCNN(784, conv=(16, 32), hidden=(256,))
    assert big.trunk[8].in_features == 32 * 4 * 4
    assert big(torch.randn(3, 784), task=4).shape == (3, 2)
    # units NAI walks: each conv (its channels) and each Linear, paired with its activation
    assert trunk_unit_layers(model) == [("1", "2"), ("4", "5"), ("8", "9")]
    # only the trunk is shared (heads are per task)
    assert set(_shared(model)) == {k for k, _ in model.trunk.named_parameters(prefix="trunk")}


def test_train_config_builds_the_cnn_and_keys_it_apart() -> None:
    stream = image_stream()
    with pytest.raises(ValueError, match="conv"):
        TrainConfig(conv=(0,))
    assert "conv" not in _config_key(TrainConfig())  # MLP runs keep their keys
    assert _config_key(TrainConfig(conv=(3, 4)))["conv"] == (3, 4)
    assert isinstance(build_model(stream.reordered([0, 1]), TrainConfig()), ContinualMLP)
    # class-incremental: one shared head over every class, on the CNN too
    one_head = build_model(stream, TrainConfig(conv=(2,), hidden=(4,), scenario="class"))
    assert isinstance(one_head, ContinualCNN) and one_head.shared_head
    assert one_head(torch.randn(3, N_IN)).shape == (3, 4)


def _moments(model: ContinualCNN, x: torch.Tensor) -> list[torch.Tensor]:
    """E[h²] per unit of each activation (a conv channel: pooled over its positions)."""
    m = _pos_moments(model, x)
    return [m[i].reshape(m[i].shape[0], -1).mean(1) for i in (2, 5, 9)]


def test_nai_cnn_weight_importance_is_the_channel_product() -> None:
    """Ω of a conv kernel entry (c_out, c_in, ·, ·) is I(c_out)·I(c_in), the same over the
    kernel; the Linear after Flatten reads channel c at H·W positions in a row."""
    model = small_cnn()
    x = torch.randn(40, N_IN)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", map="prod", stat="sq"))
    nai.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long), model, 0, 0))
    m1, m2, m3 = _moments(model, x)
    x_in = x.double().square().mean()  # one input channel: E[x²] over examples and pixels
    om = nai.omega
    assert om["trunk.1.weight"].shape == (3, 1, 3, 3)
    torch.testing.assert_close(om["trunk.1.weight"],
                               (m1 * x_in)[:, None, None, None].expand(3, 1, 3, 3).float())
    torch.testing.assert_close(om["trunk.4.weight"],
                               (m2[:, None] * m1[None, :])[:, :, None, None]
                               .expand(4, 3, 3, 3).float())
    # 12 → 10 → 5 → 3 → 1: each of the 4 channels is one position, so in_features = 4
    torch.testing.assert_close(om["trunk.8.weight"], (m3[:, None] * m2[None, :]).float())
    torch.testing.assert_close(om["trunk.4.bias"], m2.float())


def test_nai_flatten_repeats_each_channel_over_its_positions() -> None:
    torch.manual_seed(1)
    model = ContinualCNN(N_IN, conv=(3,), hidden=(5,), head_sizes=(2,), image_shape=SHAPE,
                         kernel=7)  # 12 → 6 → pool → 3: 3 channels × 9 positions
    x = torch.randn(30, N_IN)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", map="prod", stat="sq"))
    nai.after_task(model, TaskData(x, torch.zeros(30, dtype=torch.long), model, 0, 0))
    acts: list[torch.Tensor] = []
    h1 = model.trunk[2].register_forward_hook(lambda m, a, out: acts.append(out.detach()))
    h2 = model.trunk[6].register_forward_hook(lambda m, a, out: acts.append(out.detach()))
    with torch.no_grad():
        model(x, task=0)
    h1.remove()
    h2.remove()
    conv_m = acts[0].double().square().mean((0, 2, 3))
    fc_m = acts[1].double().square().mean(0)
    expected = fc_m[:, None] * conv_m.repeat_interleave(9)[None, :]
    assert nai.omega["trunk.5.weight"].shape == (5, 27)
    torch.testing.assert_close(nai.omega["trunk.5.weight"], expected.float())


def test_nai_cnn_conductance_is_the_channel_sum_of_total_conductance() -> None:
    """source='conductance': a channel's importance is E[(Σ_positions c)²] over examples, with
    the conductances from TotalConductance of the (centred) true-class logit."""
    model = small_cnn()
    x, y = torch.randn(24, N_IN), torch.randint(0, 2, (24,))
    opts = NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                      conductance_steps=8, conductance_target="logit", floor=0.0)
    nai = NAI(1.0, opts)
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=1), 1, 1))
    for lin, act in (("1", "2"), ("4", "5"), ("8", "9")):
        c = TotalConductance(model, f"trunk.{act}").attribute(
            x, baselines=torch.zeros_like(x), target=y, additional_forward_args=(1,),
            n_steps=8, completeness_tol=None).detach().double()
        per_unit = c.flatten(2).sum(2) if c.dim() > 2 else c
        torch.testing.assert_close(nai.last_importance[f"trunk.{lin}"],
                                   per_unit.square().mean(0), rtol=1e-5, atol=1e-9)
    # completeness at the channel level: the channels' conductances of conv 1 sum to the
    # change of the true-class logit from the zero baseline (n_steps=8, so loosely)
    c1 = TotalConductance(model, "trunk.2").attribute(
        x, baselines=torch.zeros_like(x), target=y, additional_forward_args=(1,), n_steps=64,
        completeness_tol=None).detach()
    with torch.no_grad():
        change = (model(x, task=1) - model(torch.zeros_like(x), task=1)).gather(1, y[:, None])
    torch.testing.assert_close(c1.flatten(1).sum(1), change.squeeze(1), rtol=0.05, atol=0.05)


def test_nai_cnn_refuses_the_linear_only_switches() -> None:
    model = small_cnn()
    data = TaskData(torch.randn(8, N_IN), torch.zeros(8, dtype=torch.long), model, 0, 0)
    for opts in (NAIOptions(reinit=0.1), NAIOptions(downstream="weights"),
                 NAIOptions(penalty="group")):
        with pytest.raises(ValueError, match=r"trunk\.1 is a Conv2d"):
            NAI(1.0, opts).after_task(model, data)


def test_nai_refuses_an_activation_less_conv() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Unflatten(1, SHAPE), nn.Conv2d(1, 2, 3),
                                       nn.MaxPool2d(2), nn.Flatten())

    with pytest.raises(TypeError, match=r"trunk\.1 \(Conv2d\) is not followed by an act"):
        trunk_unit_layers(Bad())


def test_per_example_sums_of_a_cnn_equal_a_loop() -> None:
    """EWC / MAS on a CNN take the vmap path (conv weights are not outer products)."""
    model = small_cnn().double()
    x, y = torch.randn(10, N_IN, dtype=torch.float64), torch.randint(0, 2, (10,))

    def nll(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out[None], t[None])

    got = per_example_grads(model, nll, x, y, 1, chunk=4)
    params = _shared(model)
    want = {k: torch.zeros_like(p) for k, p in params.items()}
    for i in range(10):
        model.zero_grad()
        nll(model(x[i:i + 1], task=1)[0], y[i]).backward()
        for k, p in params.items():
            want[k] += p.grad.square()
    for k in want:
        torch.testing.assert_close(got[k], want[k])


@pytest.mark.parametrize("method, hp", [
    ("ewc", {"lam": 10.0}), ("si", {"c": 0.1}), ("mas", {"lam": 0.1}),
    ("nai", {"lam": 0.1, "source": "conductance", "conductance_stat": "sq",
             "conductance_target": "centred", "conductance_weight": "fisher",
             "conductance_steps": 4}),
])
def test_every_regulariser_trains_a_cnn_and_resumes_exactly(tmp_path, method: str,
                                                             hp: dict) -> None:
    # 12×12 images, 5×5 kernels: one block leaves 4 channels of 4×4
    cfg = TrainConfig(epochs=3, batch_size=32, hidden=(8,), conv=(4,), patience=1, lr=1e-2)
    stream = image_stream()
    assert isinstance(build_model(stream, cfg), ContinualCNN)
    full = run_sequence(stream, method, hp, cfg)
    assert all(full.acc_matrix[i][i] > 80 for i in range(2)), full.acc_matrix
    ckpt = tmp_path / "run.pt"

    class Stop(Exception):
        pass

    def stop(msg: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_sequence(stream, method, hp, cfg, checkpoint=ckpt, log=stop)
    assert run_sequence(stream, method, hp, cfg, checkpoint=ckpt).acc_matrix == full.acc_matrix


def _pos_moments(model: ContinualCNN, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """E[h²] of every unit (channel, row, column) at each activation and at the pool outputs."""
    acts: dict[int, torch.Tensor] = {}
    hooks = [model.trunk[i].register_forward_hook(
        lambda m, a, out, i=i: acts.__setitem__(i, out.detach().double().square().mean(0)))
        for i in range(1, len(model.trunk))]
    with torch.no_grad():
        model(x, task=0)
    for h in hooks:
        h.remove()
    return acts


@pytest.mark.parametrize("map_", ["prod", "max"])
def test_nai_position_units_average_each_kernel_entry_over_its_uses(map_: str) -> None:
    """conv_units='position': Ω[o, i, u, v] = mean_p map(I_out[o, p], I_in[i, p + (u, v)]),
    by explicit loops; the input map of conv 2 is conv 1's map average-pooled 2×2; the
    Linear after Flatten pairs each position's own importance."""
    model = small_cnn()
    x = torch.randn(40, N_IN)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="none", map=map_, stat="sq",
                              conv_units="position"))
    nai.after_task(model, TaskData(x, torch.zeros(40, dtype=torch.long), model, 0, 0))
    m = _pos_moments(model, x)
    pair = (lambda a, b: a * b) if map_ == "prod" else torch.maximum
    x_map = x.double().square().mean(0).reshape(SHAPE)

    def loops(i_out: torch.Tensor, i_in: torch.Tensor, k: int) -> torch.Tensor:
        c_out, h_out, w_out = i_out.shape
        om = torch.zeros(c_out, i_in.shape[0], k, k, dtype=torch.float64)
        for o in range(c_out):
            for i in range(i_in.shape[0]):
                for u in range(k):
                    for v in range(k):
                        vals = [pair(i_out[o, r, c], i_in[i, r + u, c + v])
                                for r in range(h_out) for c in range(w_out)]
                        om[o, i, u, v] = torch.stack(vals).mean()
        return om

    torch.testing.assert_close(nai.omega["trunk.1.weight"],
                               loops(m[2], x_map, 3).float())
    pooled = torch.nn.functional.avg_pool2d(m[2][None], 2)[0]  # 10×10 → 5×5
    torch.testing.assert_close(nai.omega["trunk.4.weight"], loops(m[5], pooled, 3).float())
    torch.testing.assert_close(nai.omega["trunk.4.bias"], m[5].flatten(1).mean(1).float())
    # conv 2's 3×3 map pools to 1×1 before Flatten: 4 positions in all
    flat = torch.nn.functional.avg_pool2d(m[5][None], 2)[0].flatten()
    torch.testing.assert_close(nai.omega["trunk.8.weight"],
                               pair(m[9][:, None], flat[None, :]).float())


def test_nai_position_units_of_a_map_that_flattens_to_many_positions() -> None:
    torch.manual_seed(2)
    model = ContinualCNN(N_IN, conv=(2,), hidden=(3,), head_sizes=(2,), image_shape=SHAPE,
                         kernel=5)  # 12 → 8 → pool → 4: 2 channels × 16 positions
    x = torch.randn(30, N_IN)
    nai = NAI(1.0, NAIOptions(floor=0.0, norm="mean", conv_units="position"))
    nai.after_task(model, TaskData(x, torch.zeros(30, dtype=torch.long), model, 0, 0))
    m = _pos_moments(model, x)
    i_fc = m[6] / m[6].mean()
    pooled = torch.nn.functional.avg_pool2d((m[2] / m[2].mean())[None], 2)[0].flatten()
    torch.testing.assert_close(nai.omega["trunk.5.weight"],
                               (i_fc[:, None] * pooled[None, :]).float())
    assert nai.last_importance["trunk.1"].shape == (2, 8, 8)
    assert nai.last_importance["trunk.1"].mean().item() == pytest.approx(1.0)
    # the channel mode of the same model repeats each channel's mean over its positions
    chan = NAI(1.0, NAIOptions(floor=0.0, norm="mean"))
    chan.after_task(model, TaskData(x, torch.zeros(30, dtype=torch.long), model, 0, 0))
    assert not torch.allclose(chan.omega["trunk.5.weight"], nai.omega["trunk.5.weight"])


@pytest.mark.parametrize("weighting", ["uniform", "fisher"])
def test_nai_position_units_from_conductance_keep_each_position(weighting: str) -> None:
    model = small_cnn()
    x, y = torch.randn(16, N_IN), torch.randint(0, 2, (16,))
    opts = NAIOptions(source="conductance", conductance_stat="sq", norm="none",
                      conductance_steps=4, conductance_target="logit", floor=0.0,
                      conv_units="position", conductance_weight=weighting)
    nai = NAI(1.0, opts)
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    c = TotalConductance(model, "trunk.5").attribute(
        x, baselines=torch.zeros_like(x), target=y, additional_forward_args=(0,), n_steps=4,
        completeness_tol=None).detach().double()
    w = torch.ones(16, dtype=torch.float64)
    if weighting == "fisher":  # p_y (1 − p_y), normalised to mean 1
        with torch.no_grad():
            p_y = torch.softmax(model(x, task=0).double(), 1).gather(1, y[:, None])[:, 0]
        w = p_y * (1 - p_y) / (p_y * (1 - p_y)).mean()
    torch.testing.assert_close(nai.last_importance["trunk.4"],
                               (c.square() * w[:, None, None, None]).mean(0),
                               rtol=1e-5, atol=1e-9)


def _conductances(model, x, y, head, act: str, steps: int) -> torch.Tensor:
    return TotalConductance(model, f"trunk.{act}").attribute(
        x, baselines=torch.zeros_like(x), target=y, additional_forward_args=(head,),
        n_steps=steps, completeness_tol=None).detach().double()


def _layer_inputs(model, x, head) -> dict[int, torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, a[0].detach()))
             for i, m in enumerate(model.trunk) if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model(x, task=head)
    for h in hooks:
        h.remove()
    return seen


def test_nai_joint_map_is_the_per_example_product_on_an_mlp() -> None:
    torch.manual_seed(3)
    model = ContinualMLP(6, (5, 4), (2, 2)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 2, (20,))
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", map="joint",
                              conductance_target="logit", conductance_steps=4, floor=0.0))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=1), 1, 1))
    ins = _layer_inputs(model, x, 1)
    for lin, act in ((0, 1), (2, 3)):
        c2 = _conductances(model, x, y, 1, str(act), 4).square()
        a2 = ins[lin].square()
        joint = torch.stack([c2[n][:, None] * a2[n][None, :] for n in range(20)]).mean(0)
        torch.testing.assert_close(nai.omega[f"trunk.{lin}.weight"], joint / joint.mean())
        # the bias keeps the unit's own (mean-normalised) importance
        m = c2.mean(0)
        torch.testing.assert_close(nai.omega[f"trunk.{lin}.bias"], m / m.mean())


def test_nai_joint_map_of_a_conv_kernel_by_loops() -> None:
    model = small_cnn().double()
    x, y = torch.randn(6, N_IN, dtype=torch.float64), torch.randint(0, 2, (6,))
    nai = NAI(1.0, NAIOptions(source="conductance", conductance_stat="sq", map="joint",
                              conductance_target="logit", conductance_steps=4, floor=0.0,
                              conductance_weight="fisher"))
    nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
    with torch.no_grad():
        p_y = torch.softmax(model(x, task=0), 1).gather(1, y[:, None])[:, 0]
    w = p_y * (1 - p_y) / (p_y * (1 - p_y)).mean()
    s = _conductances(model, x, y, 0, "5", 4).square()  # (6, 4, 3, 3)
    a2 = _layer_inputs(model, x, 0)[4].square()  # (6, 3, 5, 5)
    om = torch.zeros(4, 3, 3, 3, dtype=torch.float64)
    for o in range(4):
        for i in range(3):
            for u in range(3):
                for v in range(3):
                    om[o, i, u, v] = sum(w[n] * s[n, o, r, c] * a2[n, i, r + u, c + v]
                                         for n in range(6) for r in range(3)
                                         for c in range(3)) / (6 * 9)
    torch.testing.assert_close(nai.omega["trunk.4.weight"], om / om.mean())
    # joint_positions='sum' with norm='task': the sum over the 3×3 output positions, 9× the
    # mean, divided by the one number of the task (the mean over weight tensors of mean(Ω))
    opts = dict(source="conductance", conductance_stat="sq", map="joint", norm="task",
                conductance_target="logit", conductance_steps=4, floor=0.0,
                conductance_weight="fisher")
    means = {}
    for how in ("mean", "sum"):
        nai = NAI(1.0, NAIOptions(**opts, joint_positions=how))
        nai.after_task(model, TaskData(x, y, lambda v: model(v, task=0), 0, 0))
        means[how] = {k: v.mean() for k, v in nai.omega.items() if k.endswith("weight")}
        kernel = om * (9 if how == "sum" else 1)
        torch.testing.assert_close(nai.omega["trunk.4.weight"] / nai.omega["trunk.4.weight"].mean(),
                                   kernel / kernel.mean())
    # only the conv layers grow: their share of the trunk's Ω goes up against the Linear's
    lin = [k for k in means["sum"] if k.startswith("trunk.") and k != "trunk.4.weight"
           and k != "trunk.1.weight"]
    assert lin
    for k in lin:
        assert (means["sum"]["trunk.4.weight"] / means["sum"][k]
                == pytest.approx(9 * means["mean"]["trunk.4.weight"] / means["mean"][k]))


def test_nai_joint_map_needs_conductance_and_mean_norm() -> None:
    with pytest.raises(ValueError, match="map='joint' needs source='conductance'"):
        NAIOptions(map="joint")
    with pytest.raises(ValueError, match="joint_positions applies to map='joint' only"):
        NAIOptions(joint_positions="sum")
    with pytest.raises(ValueError, match="norm='mean', 'task' or 'none'"):
        NAIOptions(map="joint", source="conductance", norm="max")


def test_nai_joint_map_with_task_norm_is_the_per_example_product_over_one_number() -> None:
    """map='joint', norm='task': Ω_ij = E_n[c_i(n)² a_j(n)²] / d per layer, the bias E[c_i²] / d,
    d the mean over the trunk's weight tensors of mean(Ω); a task whose logits are scaled by 3
    gets the same Ω (one conductance factor in every entry)."""
    torch.manual_seed(5)
    model = ContinualMLP(6, (5, 4), (2, 2)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 2, (20,))
    opts = NAIOptions(source="conductance", conductance_stat="sq", map="joint", norm="task",
                      conductance_target="logit", conductance_steps=4, floor=0.0)
    nai = _nai_with_scaled_head(model, x, y, 1, opts, 1.0)
    ins = _layer_inputs(model, x, 1)
    joint, bias = {}, {}
    for lin, act in ((0, 1), (2, 3)):
        c2 = _conductances(model, x, y, 1, str(act), 4).square()
        a2 = ins[lin].square()
        joint[lin] = torch.stack([c2[n][:, None] * a2[n][None, :] for n in range(20)]).mean(0)
        bias[lin] = c2.mean(0)
    d = (joint[0].mean() + joint[2].mean()) / 2
    for lin in (0, 2):
        torch.testing.assert_close(nai.omega[f"trunk.{lin}.weight"], joint[lin] / d)
        torch.testing.assert_close(nai.omega[f"trunk.{lin}.bias"], bias[lin] / d)
    scaled = _nai_with_scaled_head(model, x, y, 1, opts, 3.0)
    for k, v in nai.omega.items():
        torch.testing.assert_close(scaled.omega[k], v)
    # norm='none': the joint map itself, with the task's own scale
    raw = _nai_with_scaled_head(model, x, y, 1, replace(opts, norm="none"), 1.0)
    for lin in (0, 2):
        torch.testing.assert_close(raw.omega[f"trunk.{lin}.weight"], joint[lin])
        torch.testing.assert_close(raw.omega[f"trunk.{lin}.bias"], bias[lin])


def _nai_with_scaled_head(model, x, y, head: int, options: NAIOptions, scale: float) -> NAI:
    """NAI after one task whose head (weights and bias) is multiplied by ``scale``: every
    logit, and so every conductance, is ``scale`` times larger. The head is restored."""
    with torch.no_grad():
        model.heads[head].weight.mul_(scale)
        model.heads[head].bias.mul_(scale)
    try:
        nai = NAI(1.0, options)
        nai.after_task(model, TaskData(x, y, lambda v: model(v, task=head), head, head))
    finally:
        with torch.no_grad():
            model.heads[head].weight.div_(scale)
            model.heads[head].bias.div_(scale)
    return nai


def test_nai_network_norm_keeps_the_layer_ratios_and_drops_the_task_scale() -> None:
    """norm='network': one scale per task for the whole trunk. Doubling the task head doubles
    every conductance, so E[c²] grows 4×: Ω is unchanged under 'network', 4× under 'none';
    the ratio between two layers' mean importances is that of 'none'."""
    model = small_cnn().double()
    x, y = torch.randn(12, N_IN, dtype=torch.float64), torch.randint(0, 2, (12,))
    base = dict(source="conductance", conductance_stat="sq", conductance_steps=4, floor=0.0)

    def omega(norm: str, head_scale: float) -> dict[str, torch.Tensor]:
        nai = _nai_with_scaled_head(model, x, y, 0, NAIOptions(norm=norm, **base), head_scale)
        return {**nai.omega, **{f"unit:{k}": v for k, v in nai.last_importance.items()}}

    net1, net2 = omega("network", 1.0), omega("network", 2.0)
    none1, none2 = omega("none", 1.0), omega("none", 2.0)
    for k in net1:
        torch.testing.assert_close(net2[k], net1[k])
        if k.startswith("unit:trunk"):
            torch.testing.assert_close(none2[k], 4 * none1[k])
    layers = ["unit:trunk.1", "unit:trunk.4", "unit:trunk.8"]
    means = torch.stack([net1[k].mean() for k in layers])
    assert means.mean().item() == pytest.approx(1.0)  # the mean of the layer means is 1
    torch.testing.assert_close(means / means[0],
                               torch.stack([none1[k].mean() for k in layers]) /
                               none1[layers[0]].mean())
    with pytest.raises(ValueError, match="per-layer norm"):
        NAIOptions(norm="network", downstream="weights")


def test_nai_activation_input_side_and_task_norm() -> None:
    """input_side='activation': Ω_ij = E[c_i²]·E[a_j²] (a_j the input unit's activation);
    norm='task' divides the trunk's Ω by one number, so a task whose logits are scaled by s
    (every conductance × s, every Ω × s² alike) gets the same Ω."""
    torch.manual_seed(4)
    model = ContinualMLP(6, (5, 4), (2, 2)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 2, (20,))
    base = dict(source="conductance", conductance_stat="sq", conductance_steps=4, floor=0.0,
                conductance_target="logit", input_side="activation")

    def omega(norm: str, head_scale: float) -> dict[str, torch.Tensor]:
        nai = _nai_with_scaled_head(model, x, y, 1, NAIOptions(norm=norm, **base), head_scale)
        assert not any(k.startswith("act:") for k in nai.last_importance)
        return nai.omega

    none = omega("none", 1.0)
    with torch.no_grad():
        h1 = torch.relu(model.trunk[0](x))
    c1 = _conductances(model, x, y, 1, "1", 4).square().mean(0)
    c2 = _conductances(model, x, y, 1, "3", 4).square().mean(0)
    torch.testing.assert_close(none["trunk.0.weight"], c1[:, None] * x.square().mean(0)[None])
    torch.testing.assert_close(none["trunk.2.weight"], c2[:, None] * h1.square().mean(0)[None])
    task1, task3 = omega("task", 1.0), omega("task", 3.0)
    d = (none["trunk.0.weight"].mean() + none["trunk.2.weight"].mean()) / 2
    for k in task1:
        torch.testing.assert_close(task1[k], none[k] / d)
        torch.testing.assert_close(task3[k], task1[k])
    with pytest.raises(ValueError, match="norm='task' needs input_side='activation'"):
        NAIOptions(norm="task", source="conductance")
    with pytest.raises(ValueError, match="input_side='activation' needs source='conductance'"):
        NAIOptions(input_side="activation")
