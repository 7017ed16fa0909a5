"""Tests OF the NumPy DeepLIFT oracle (tests/oracles/deeplift_numpy.py).

Hand-computed cases spell out the arithmetic in comments; random nets check the
algebraic invariants (summation-to-delta for every rule and layer type).
"""

import numpy as np
import pytest

try:  # rootdir on sys.path (python -m pytest from the repo root, or tests/ is a package)
    from tests.oracles import deeplift_numpy as dl
except ImportError:  # pragma: no cover - pytest "prepend" import mode puts tests/ on sys.path
    from oracles import deeplift_numpy as dl

ATOL = 1e-12
ALL_RULES = ("rescale", "reveal_cancel", "genomics_default")


def close(a, b, atol=ATOL):
    np.testing.assert_allclose(
        np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=0, atol=atol
    )


# --------------------------------------------------------------------------- paper examples


def min_net():
    # o = h1' - h2',  h = ReLU(W1 i),  W1 rows: h1 = i1, h2 = i1 - i2.
    # For i1 >= 0 this is o = i1 - ReLU(i1 - i2) = min(i1, i2).
    return [dl.Dense([[1.0, 0.0], [1.0, -1.0]]), dl.ReLU(), dl.Dense([[1.0, -1.0]])]


def test_min_example_reveal_cancel_splits_evenly():
    # i = (3, 1), reference (0, 0); min = 1.
    # Forward, linear rule on the total Δi = (3, 1) (both > 0):
    #   h1 pre: Δ⁺ = 1*3 = 3, Δ⁻ = 0                     (r = 0)
    #   h2 pre: Δ⁺ = 1*3 = 3, Δ⁻ = -1*1 = -1             (r = 0)
    # RevealCancel on h2:
    #   Δy⁺ = ½[relu(3) - relu(0)] + ½[relu(-1+3) - relu(-1)] = 1.5 + 1 = 2.5
    #   Δy⁻ = ½[relu(-1) - relu(0)] + ½[relu(3-1) - relu(3)]  = 0 - 0.5 = -0.5
    #   m⁺ = 2.5/3 = 5/6,  m⁻ = -0.5/-1 = 1/2
    # RevealCancel on h1: Δy⁺ = ½*3 + ½*3 = 3, m⁺ = 1; Δy⁻ = 0, m⁻ = 0/pc(0) = 0.
    # Output o = h1' - h2': Δh1' = 3 > 0 → Δt⁺ = 3; Δh2' = 2 > 0, w = -1 → Δt⁻ = -2; Δt = 1.
    # Backward (1, 1): m(h1') = P*1 = 1, m(h2') = N*1 = -1 (both streams).
    #   h1 pre: m⁺ = 1*1 = 1, m⁻ = 0*1 = 0;   h2 pre: m⁺ = 5/6*(-1), m⁻ = 1/2*(-1).
    #   i1 (Δ > 0, column (1, 1) is all positive): m = 1*m⁺(h1) + 1*m⁺(h2) = 1 - 5/6 = 1/6
    #      → C_i1 = 3 * 1/6 = 0.5
    #   i2 (Δ > 0, column (0, -1) is negative): m = -1*m⁻(h2) = 1/2 → C_i2 = 1 * 1/2 = 0.5
    # Backward (1, 0): m(h1') = 1, m(h2') = N*m⁻ = 0 → i1: m = 1 → C = 3; i2: 0.
    # Backward (0, 1): m(h1') = P*0 = 0, m(h2') = -1 → i1: m = -5/6 → C = -2.5; i2: 0.5.
    out = dl.deeplift(min_net(), [3.0, 1.0], [0.0, 0.0], 0, "reveal_cancel")
    close(out["contribs"], [0.5, 0.5])  # ½ min(i1, i2) each
    close(out["multipliers"], [1 / 6, 0.5])
    close(out["contribs_pos"], [3.0, 0.0])
    close(out["contribs_neg"], [-2.5, 0.5])
    assert out["delta_t"] == pytest.approx(1.0)
    assert out["delta_t_pos"] == pytest.approx(3.0)
    assert out["delta_t_neg"] == pytest.approx(-2.0)


@pytest.mark.parametrize("i1,i2", [(3.0, 1.0), (5.0, 2.5), (0.7, 0.2)])
def test_min_example_general(i1, i2):
    # RevealCancel gives ½ min to each input; Rescale (i1 > i2): h2 has Δ = i1 - i2 > 0
    # with ReLU slope 1, so m(i1) = 1 - 1 = 0 and m(i2) = (-1)(-1) = 1 → C = (0, i2).
    rc = dl.deeplift(min_net(), [i1, i2], [0.0, 0.0], 0, "reveal_cancel")
    close(rc["contribs"], [0.5 * min(i1, i2)] * 2)
    rs = dl.deeplift(min_net(), [i1, i2], [0.0, 0.0], 0, "rescale")
    close(rs["contribs"], [0.0, i2])
    close(rs["multipliers"], [0.0, 1.0])


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_relu_with_bias_minus_ten(rule):
    # pre = x - 10;  x = 10 + ε, reference 0 → pre 0.5 vs -10, Δpre = 10.5 (all Δ⁺).
    # Rescale: m = (relu(0.5) - relu(-10)) / 10.5 = 0.5/10.5; C = m * 10.5 = ε = 0.5.
    # RevealCancel: Δ⁻ = 0 so Δy⁺ = ½[relu(0.5) - relu(-10)] * 2 = 0.5, the same.
    # Gradient × input would give 10.5 (and -10 to the bias).
    eps = 0.5
    net = [dl.Dense([[1.0]], [-10.0]), dl.ReLU(), dl.Dense([[1.0]])]
    out = dl.deeplift(net, [10.0 + eps], [0.0], 0, rule)
    close(out["contribs"], [eps])
    close(out["multipliers"], [eps / (10.0 + eps)])
    assert out["delta_t"] == pytest.approx(eps)


# --------------------------------------------------------------------------- hand-worked 2-2-1


def test_hand_worked_reveal_cancel_2_2_1():
    # W1 = [[2, -1], [-1, 1]], b1 = (0, 0.5); ReLU (RevealCancel); W2 = [[1, -2]], b2 = 0.3.
    # x = (1, 2), reference (0, 0): Δx = (1, 2), both > 0.
    # Hidden pre-activations:
    #   unit 1: actual 2 - 2 + 0 = 0,     ref 0;    Δ⁺ = 2*1 = 2, Δ⁻ = -1*2 = -2  (Δ = 0!)
    #   unit 2: actual -1 + 2 + .5 = 1.5, ref 0.5;  Δ⁺ = 1*2 = 2, Δ⁻ = -1*1 = -1  (Δ = 1)
    # RevealCancel, unit 1 (r = 0):
    #   Δy⁺ = ½[relu(2) - relu(0)] + ½[relu(-2+2) - relu(-2)] = 1 + 0 = 1
    #   Δy⁻ = ½[relu(-2) - relu(0)] + ½[relu(2-2) - relu(2)]  = 0 - 1 = -1
    #   m⁺ = 1/2, m⁻ = -1/-2 = 1/2
    # RevealCancel, unit 2 (r = 0.5):
    #   Δy⁺ = ½[relu(2.5) - relu(.5)] + ½[relu(-.5+2) - relu(-.5)] = 1 + 0.75 = 1.75
    #   Δy⁻ = ½[relu(-.5) - relu(.5)] + ½[relu(1.5) - relu(2.5)]   = -0.25 - 0.5 = -0.75
    #   m⁺ = 1.75/2 = 0.875, m⁻ = -0.75/-1 = 0.75
    # Output, linear rule on total Δ of the hidden outputs, Δh' = (0, 1):
    #   unit 1 has Δ = 0 → contributes to neither Δt⁺ nor Δt⁻
    #   unit 2 has Δ = 1 > 0 with w = -2 → Δt⁻ = -2, Δt⁺ = 0
    #   check: t(x) = 0 - 2*1.5 + .3 = -2.7, t(ref) = 0 - 2*.5 + .3 = -0.7, Δt = -2 ✓
    # Backward with seeds (m⁺_t, m⁻_t) = (a, b):
    #   h1' (Δ = 0, ½ rule): ½ * 1 * (a + b);   h2' (Δ > 0, w < 0): N m⁻ = -2b
    #   h1 pre: m⁺ = m⁻ = ½ * ½(a + b) = (a + b)/4
    #   h2 pre: m⁺ = 0.875 * (-2b) = -1.75b,  m⁻ = 0.75 * (-2b) = -1.5b
    #   x1 (Δ > 0; column (2, -1)): m = 2*m⁺(h1) + (-1)*m⁻(h2) = (a + b)/2 + 1.5b
    #   x2 (Δ > 0; column (-1, 1)): m = 1*m⁺(h2) + (-1)*m⁻(h1) = -1.75b - (a + b)/4
    # (1, 1): m = (2.5, -2.25)  → C = (2.5, -4.5),  sum -2 = Δt
    # (1, 0): m = (0.5, -0.25)  → C = (0.5, -0.5),  sum  0 = Δt⁺
    # (0, 1): m = (2.0, -2.0)   → C = (2.0, -4.0),  sum -2 = Δt⁻
    net = [
        dl.Dense([[2.0, -1.0], [-1.0, 1.0]], [0.0, 0.5]),
        dl.ReLU(),
        dl.Dense([[1.0, -2.0]], [0.3]),
    ]
    out = dl.deeplift(net, [1.0, 2.0], [0.0, 0.0], 0, "reveal_cancel")
    assert out["delta_t"] == pytest.approx(-2.0)
    assert out["delta_t_pos"] == pytest.approx(0.0)
    assert out["delta_t_neg"] == pytest.approx(-2.0)
    close(out["multipliers"], [2.5, -2.25])
    close(out["contribs"], [2.5, -4.5])
    close(out["contribs_pos"], [0.5, -0.5])
    close(out["contribs_neg"], [2.0, -4.0])
    # genomics_default: the ReLU follows a Dense layer → RevealCancel, identical result
    gd = dl.deeplift(net, [1.0, 2.0], [0.0, 0.0], 0, "genomics_default")
    assert gd["rules"] == [None, "reveal_cancel", None]
    close(gd["contribs"], out["contribs"])
    # Rescale for comparison: unit 1 has Δ = 0 → m = relu'(0) = 0; unit 2 m = 1/1 = 1.
    #   x1: m = 2*0 + (-1)*(1*(-2)) = 2 → C = 2;  x2: m = (-1)*0 + 1*(-2) = -2 → C = -4
    rs = dl.deeplift(net, [1.0, 2.0], [0.0, 0.0], 0, "rescale")
    close(rs["contribs"], [2.0, -4.0])


# --------------------------------------------------------------------------- ½ rule at Δx = 0


def test_half_rule_at_zero_delta_hidden():
    # h = x1 - x2 (RevealCancel ReLU, r = 0), t = 1 * relu(h).  x = (2, 2), ref (0, 0).
    # h pre: Δ⁺ = 2, Δ⁻ = -2, total Δ = 0.
    #   Δy⁺ = ½[relu(2) - 0] + ½[relu(0) - relu(-2)] = 1;  Δy⁻ = ½*0 + ½[relu(0) - relu(2)] = -1
    #   m⁺ = 1/2, m⁻ = -1/-2 = 1/2
    # Final Dense: its input has Δ = 0 → m = ½ * w * (m⁺_t + m⁻_t) = ½ * 1 * 2 = 1 on both streams.
    #   h pre: m⁺ = m⁻ = 1/2
    #   x1 (Δ > 0, w = +1): m = P m⁺ = 1/2 → C = 1;   x2 (Δ > 0, w = -1): m = N m⁻ = -1/2 → C = -1
    # The cancelling ± parts stay visible; a 0 multiplier at Δ = 0 would give (0, 0).
    net = [dl.Dense([[1.0, -1.0]]), dl.ReLU(), dl.Dense([[1.0]])]
    out = dl.deeplift(net, [2.0, 2.0], [0.0, 0.0], 0, "reveal_cancel")
    close(out["contribs"], [1.0, -1.0])
    close(out["multipliers"], [0.5, -0.5])
    assert out["delta_t"] == 0.0
    # (1, 0) pass: m at h' = ½ * 1 * (1 + 0) = ½ → h pre m± = ¼ → C = (2 * ¼, 2 * -¼)
    close(out["contribs_pos"], [0.5, -0.5])
    close(out["contribs_neg"], [0.5, -0.5])


def test_half_rule_at_zero_delta_input():
    # t = 3 x1 - 4 x2, x = (1, 0), ref = (0, 0): x2 has Δ = 0.
    # x1: Δ > 0, w = 3 > 0 → m = P m⁺ = 3 (seeds (1, 1)).
    # x2: Δ = 0 → m = ½ * (-4) * (1 + 1) = -4 (= gradient); its contribution is 0.
    # (1, 0) pass: x2 multiplier = ½ * (-4) * 1 = -2, contribution still 0.
    net = [dl.Dense([[3.0, -4.0]])]
    out = dl.deeplift(net, [1.0, 0.0], [0.0, 0.0], 0, "rescale")
    close(out["multipliers"], [3.0, -4.0])
    close(out["contribs"], [3.0, 0.0])
    close(out["contribs_pos"], [3.0, 0.0])
    close(out["contribs_neg"], [0.0, 0.0])


# --------------------------------------------------------------------------- max pool (crossmax)


def test_maxpool_crossmax_hand_example():
    # x = [[1, 3, 2, 0]], ref = [[4, 0, 0, 1]] (1 channel, length 4), MaxPool1d(2, 2),
    # Flatten, t = 1*p1 + 2*p2.
    # Window 1 (positions 0, 1): actual max 3 at 1, reference max 4 at 0; Δy = 3 - 4 = -1 < 0
    #   → routed to the REFERENCE arg-max, position 0: Δx_0 = 1 - 4 = -3, m = -1/-3 = 1/3.
    #   (The plain gradient rule would send everything to position 1, whose Δ is +3.)
    # Window 2 (positions 2, 3): actual max 2 at 2, reference max 1 at 3; Δy = 2 - 1 = 1 ≥ 0
    #   → routed to the actual arg-max, position 2: Δx_2 = 2, m = 1/2.
    # Δt = (3 + 2*2) - (4 + 2*1) = 1.  Δp = (-1, 1): Δt⁺ = 2*1 = 2, Δt⁻ = 1*(-1) = -1.
    # Multipliers: pos 0: 1/3 * 1 = 1/3; pos 2: 1/2 * 2 = 1; positions 1, 3: 0.
    # Contributions: pos 0: 1/3 * -3 = -1; pos 2: 1 * 2 = 2 → sum 1 = Δt.
    # (1, 0) pass: p1 has Δ < 0 → m = N m⁺ + P m⁻ = 0; p2: P m⁺ = 2 → contribs_pos = (0,0,2,0).
    # (0, 1) pass: p1: P m⁻ = 1 → pos 0: 1/3 * -3 = -1; p2: N m⁻ = 0 → contribs_neg = (-1,0,0,0).
    net = [dl.MaxPool1d(2, 2), dl.Flatten(), dl.Dense([[1.0, 2.0]])]
    for rule in ("rescale", "reveal_cancel"):
        out = dl.deeplift(net, [[1.0, 3.0, 2.0, 0.0]], [[4.0, 0.0, 0.0, 1.0]], 0, rule)
        close(out["multipliers"], [[1 / 3, 0.0, 1.0, 0.0]])
        close(out["contribs"], [[-1.0, 0.0, 2.0, 0.0]])
        close(out["contribs_pos"], [[0.0, 0.0, 2.0, 0.0]])
        close(out["contribs_neg"], [[-1.0, 0.0, 0.0, 0.0]])
        assert out["delta_t"] == pytest.approx(1.0)
        assert (out["delta_t_pos"], out["delta_t_neg"]) == pytest.approx((2.0, -1.0))


def test_maxpool_ties_route_to_first_index():
    # Actual window (2, 2): tie → first index (position 0), like torch.  Ref (0, 0).
    # Δy = 2 ≥ 0 → position 0, Δx_0 = 2, m = 1 → C = (2, 0).
    net = [dl.MaxPool1d(2), dl.Flatten(), dl.Dense([[1.0]])]
    out = dl.deeplift(net, [[2.0, 2.0]], [[0.0, 0.0]], 0, "rescale")
    close(out["contribs"], [[2.0, 0.0]])
    # Reference tie, Δy < 0: actual (-1, -3), ref (0, 0) → Δy = -1 - 0 = -1 → reference
    # arg-max = position 0 (first), Δx_0 = -1, m = 1 → C = (-1, 0).
    out = dl.deeplift(net, [[-1.0, -3.0]], [[0.0, 0.0]], 0, "rescale")
    close(out["contribs"], [[-1.0, 0.0]])


def test_maxpool2d_overlapping_windows_sum_routes():
    # 1x2x3 input, MaxPool2d(2, stride 1) → 1x1x2; both windows share the middle column.
    # actual [[0, 5, 1], [0, 0, 0]], ref 0: each window's max is 5 at (0, 1) → both route to it,
    # each with m = 5/5 = 1; t = p1 + p2 → multiplier at (0, 1) = 1 + 1 = 2, C = 10 = Δt.
    net = [dl.MaxPool2d(2, 1), dl.Flatten(), dl.Dense([[1.0, 1.0]])]
    x = [[[0.0, 5.0, 1.0], [0.0, 0.0, 0.0]]]
    out = dl.deeplift(net, x, np.zeros((1, 2, 3)), 0, "rescale")
    expected = np.zeros((1, 2, 3))
    expected[0, 0, 1] = 10.0
    close(out["contribs"], expected)
    assert out["multipliers"][0, 0, 1] == pytest.approx(2.0)


# --------------------------------------------------------------------------- batchnorm, genomics


def test_batchnorm_negative_scale_swaps_streams():
    # h = Dense([[1, -1]]) → Δ⁺ = 3, Δ⁻ = -1 for x = (3, 1), ref 0.
    # BN s = -2, t = 7: Δy⁺ = s Δx⁻ = 2, Δy⁻ = s Δx⁺ = -6 (total -4 = -2 * 2).
    # ReLU (RevealCancel) at r = 7: Δy⁺ = ½[relu(9) - 7] + ½[relu(3) - relu(1)] = 1 + 1 = 2, m⁺ = 1;
    #   Δy⁻ = ½[relu(1) - 7] + ½[relu(3) - relu(9)] = -3 - 3 = -6, m⁻ = 1.
    # t = relu(.): Dense([[1]]), Δ = -4 < 0 → (1, 1) pass m = 1 on both streams.
    # Back through BN (s < 0, streams swap): m⁺_x = s m⁻ = -2, m⁻_x = s m⁺ = -2.
    # Inputs: x1 (w = 1): P m⁺ = -2 → C = -6; x2 (w = -1): N m⁻ = 2 → C = 2; sum -4 = Δt.
    net = [dl.Dense([[1.0, -1.0]]), dl.BatchNormEval([-2.0], [7.0]), dl.ReLU(), dl.Dense([[1.0]])]
    out = dl.deeplift(net, [3.0, 1.0], [0.0, 0.0], 0, "reveal_cancel")
    close(out["contribs"], [-6.0, 2.0])
    assert out["delta_t"] == pytest.approx(-4.0)
    assert out["rules"] == [None, None, "reveal_cancel", None]


def test_genomics_default_rule_resolution():
    rng = np.random.default_rng(0)
    net = [
        dl.Conv1d(rng.normal(size=(2, 1, 2))),
        dl.BatchNormEval([1.0, -1.0], [0.0, 0.0]),
        dl.ReLU(),
        dl.MaxPool1d(2),
        dl.Flatten(),
        dl.Dense(rng.normal(size=(3, 4))),
        dl.Tanh(),
        dl.Dense(rng.normal(size=(1, 3))),
    ]
    assert dl.resolve_rules(net, "genomics_default") == [
        None,
        None,
        "rescale",
        None,
        None,
        None,
        "reveal_cancel",
        None,
    ]
    assert dl.resolve_rules(net, "rescale")[2] == "rescale"
    with pytest.raises(ValueError):
        dl.resolve_rules([dl.ReLU(), dl.Dense([[1.0]])], "genomics_default")
    with pytest.raises(ValueError):  # nonlinearity preceded by a nonlinearity
        dl.resolve_rules(
            [dl.Dense([[1.0]]), dl.ReLU(), dl.Tanh(), dl.Dense([[1.0]])], "genomics_default"
        )
    with pytest.raises(ValueError):
        dl.deeplift([dl.ReLU(), dl.Dense([[1.0]])], [1.0], [0.0], 0, "genomics_default")
    with pytest.raises(ValueError):
        dl.resolve_rules(net, "revealcancel")


# --------------------------------------------------------------------------- random nets


ACTS = [dl.ReLU, dl.Sigmoid, dl.Tanh, dl.Softplus, lambda: dl.LeakyReLU(0.1)]


def _act(rng):
    return ACTS[rng.integers(len(ACTS))]()


def _bn(rng, c):
    s = rng.uniform(0.3, 2.0, size=c) * rng.choice([-1.0, 1.0], size=c)
    s[0] = -abs(s[0])  # at least one negative γ
    return dl.BatchNormEval(s, rng.normal(size=c))


def net_dense(rng):
    layers = [
        dl.Dense(rng.normal(size=(6, 5)), rng.normal(size=6)),
        _act(rng),
        _bn(rng, 6),
        dl.Dense(rng.normal(size=(4, 6)), rng.normal(size=4)),
        _act(rng),
        dl.Dense(rng.normal(size=(3, 4)), rng.normal(size=3)),
    ]
    return layers, (5,)


def net_conv1d(rng):
    # (2, 9) → conv k3 p1 → (3, 9) → pool2 → (3, 4) → conv k2 s2 → (4, 2) → GAP → (4,)
    layers = [
        dl.Conv1d(rng.normal(size=(3, 2, 3)), rng.normal(size=3), stride=1, padding=1),
        _act(rng),
        dl.MaxPool1d(2, 2),
        dl.Conv1d(rng.normal(size=(4, 3, 2)), rng.normal(size=4), stride=2),
        _bn(rng, 4),
        _act(rng),
        dl.GlobalAvgPool1d(),
        dl.Dense(rng.normal(size=(5, 4)), rng.normal(size=5)),
        _act(rng),
        dl.Dense(rng.normal(size=(2, 5)), rng.normal(size=2)),
    ]
    return layers, (2, 9)


def net_conv1d_pools(rng):
    # (2, 8) → conv k3 s2 p2 → (3, 5) → avg k2 s1 → (3, 4) → max k3 s1 (overlapping) → (3, 2)
    layers = [
        dl.Conv1d(rng.normal(size=(3, 2, 3)), rng.normal(size=3), stride=2, padding=2),
        _act(rng),
        dl.AvgPool1d(2, 1),
        dl.MaxPool1d(3, 1),
        dl.Flatten(),
        dl.Dense(rng.normal(size=(4, 6)), rng.normal(size=4)),
        _act(rng),
        dl.Dense(rng.normal(size=(3, 4)), rng.normal(size=3)),
    ]
    return layers, (2, 8)


def net_conv2d(rng):
    # (1, 6, 7) → conv (2,3) s(1,2) p(1,0) → (2, 7, 3) → max 2 s1 → (2, 6, 2) → avg 2 → (2, 3, 1)
    layers = [
        dl.Conv2d(rng.normal(size=(2, 1, 2, 3)), rng.normal(size=2), stride=(1, 2), padding=(1, 0)),
        _bn(rng, 2),
        _act(rng),
        dl.MaxPool2d(2, 1),
        dl.AvgPool2d(2),
        dl.Flatten(),
        dl.Dense(rng.normal(size=(4, 6)), rng.normal(size=4)),
        _act(rng),
        dl.Dense(rng.normal(size=(3, 4)), rng.normal(size=3)),
    ]
    return layers, (1, 6, 7)


@pytest.mark.parametrize("builder", [net_dense, net_conv1d, net_conv1d_pools, net_conv2d])
def test_summation_to_delta_random_nets(builder):
    rng = np.random.default_rng(sum(map(ord, builder.__name__)))  # fixed per architecture
    for _ in range(8):
        layers, shape = builder(rng)
        ref = rng.normal(size=shape) * 0.7  # non-zero reference
        x = rng.normal(size=shape) * 1.5
        same = rng.random(shape) < 0.15  # some inputs with Δ = 0 exercise the ½ rule
        x = np.where(same, ref, x)
        n_out = layers[-1].W.shape[0]
        for rule in ALL_RULES:
            for k in range(n_out):
                out = dl.deeplift(layers, x, ref, k, rule)
                t, t_ref = dl.forward(layers, x)[k], dl.forward(layers, ref)[k]
                assert out["delta_t"] == pytest.approx(t - t_ref, abs=1e-12)
                assert out["contribs"].shape == shape
                assert abs(out["contribs"].sum() - out["delta_t"]) < 1e-10
                assert abs(out["delta_t_pos"] + out["delta_t_neg"] - out["delta_t"]) < 1e-10
                assert abs(out["contribs_pos"].sum() - out["delta_t_pos"]) < 1e-10
                assert abs(out["contribs_neg"].sum() - out["delta_t_neg"]) < 1e-10
                close(out["contribs_pos"] + out["contribs_neg"], out["contribs"], atol=1e-10)
                close(out["multipliers"] * (x - ref), out["contribs"], atol=1e-10)
                assert out["delta_t_pos"] >= 0 >= out["delta_t_neg"]
                assert np.all(out["contribs"][x == ref] == 0)


def test_conv_matrices_match_conv_and_clamp():
    # The oracle's conv P/N matrices (conv with clamped weights) equal the clamped conv matrix,
    # because each (output, input) pair meets at most one weight.
    rng = np.random.default_rng(3)
    conv = dl.Conv2d(
        rng.normal(size=(2, 2, 2, 3)), rng.normal(size=2), stride=(2, 1), padding=((1, 0), 1)
    )
    W, P, N = conv.matrices((2, 4, 5))
    close(P, np.where(W > 0, W, 0.0))
    close(N, np.where(W < 0, W, 0.0))
    x = rng.normal(size=(2, 4, 5))
    close(conv.forward(x).ravel(), W @ x.ravel() + np.repeat(conv.bias, conv.forward(x)[0].size))


# --------------------------------------------------------------------------- closed forms


def test_rescale_multipliers_closed_form_one_hidden_layer():
    # t = v · σ(W x + b) + c.  Rescale keeps m⁺ = m⁻ everywhere, so the linear rule reduces to
    # Wᵀ m (P m + N m = W m; at Δ = 0, ½ W (m + m) = W m):
    #   m_x = Wᵀ (v ⊙ (σ(z) - σ(z⁰)) / (z - z⁰)),  z = W x + b, z⁰ = W x⁰ + b.
    rng = np.random.default_rng(7)
    for act, f in [(dl.Sigmoid(), lambda z: 1 / (1 + np.exp(-z))), (dl.Tanh(), np.tanh)]:
        for _ in range(5):
            W, b = rng.normal(size=(4, 3)), rng.normal(size=4)
            V, c = rng.normal(size=(2, 4)), rng.normal(size=2)
            x, x0 = rng.normal(size=3), rng.normal(size=3)
            z, z0 = W @ x + b, W @ x0 + b
            for k in range(2):
                expected = W.T @ (V[k] * (f(z) - f(z0)) / (z - z0))
                out = dl.deeplift([dl.Dense(W, b), act, dl.Dense(V, c)], x, x0, k, "rescale")
                close(out["multipliers"], expected, atol=1e-12)
                close(out["contribs"], expected * (x - x0), atol=1e-12)


def test_rescale_uses_derivative_at_reference_when_delta_tiny():
    # Δz = 1e-9 < 1e-7 → m = σ'(z⁰) = σ(1)(1 - σ(1)), not the (noisy) difference quotient.
    net = [dl.Dense([[1.0]], [1.0]), dl.Sigmoid(), dl.Dense([[1.0]])]
    out = dl.deeplift(net, [1e-9], [0.0], 0, "rescale")
    s1 = 1 / (1 + np.exp(-1.0))
    assert out["multipliers"][0] == pytest.approx(s1 * (1 - s1), rel=1e-12)


def _linear_net(rng):
    # (2, 6) → conv k3 p1 → (3, 6) → BN (negative γ) → avg 2 → (3, 3) → flatten 9 → dense 4 → BN
    # → dense 2.  No nonlinearity at all.
    return [
        dl.Conv1d(rng.normal(size=(3, 2, 3)), rng.normal(size=3), padding=1),
        _bn(rng, 3),
        dl.AvgPool1d(2),
        dl.Flatten(),
        dl.Dense(rng.normal(size=(4, 9)), rng.normal(size=4)),
        _bn(rng, 4),
        dl.Dense(rng.normal(size=(2, 4)), rng.normal(size=2)),
    ]


def test_linear_net_all_rules_equal_gradient_times_delta():
    # For an affine t the gradient is exactly g_i = t(e_i) - t(0) (no finite differences).
    rng = np.random.default_rng(11)
    for _ in range(3):
        layers = _linear_net(rng)
        shape = (2, 6)
        x, ref = rng.normal(size=shape), rng.normal(size=shape)
        x[0, 2] = ref[0, 2]  # one Δ = 0 input
        t0 = dl.forward(layers, np.zeros(shape))
        grads = np.stack(
            [dl.forward(layers, np.eye(12)[j].reshape(shape)) - t0 for j in range(12)], axis=-1
        )  # (2 outputs, 12 inputs)
        for k in range(2):
            g = grads[k].reshape(shape)
            for rule in ALL_RULES:
                out = dl.deeplift(layers, x, ref, k, rule)
                close(out["multipliers"], g, atol=1e-10)
                close(out["contribs"], g * (x - ref), atol=1e-10)


def test_reveal_cancel_equals_rescale_when_no_cancellation():
    # One input, positive weights: Δx⁻ = 0 everywhere, so RevealCancel's Δy⁺ =
    # ½[f(r+Δ)-f(r)] * 2 = Δy, m⁺ = Δy/Δx = the Rescale multiplier.
    rng = np.random.default_rng(5)
    net = [
        dl.Dense(np.abs(rng.normal(size=(3, 1)))),
        dl.Tanh(),
        dl.Dense(np.abs(rng.normal(size=(1, 3)))),
    ]
    a = dl.deeplift(net, [1.3], [-0.4], 0, "rescale")
    b = dl.deeplift(net, [1.3], [-0.4], 0, "reveal_cancel")
    close(a["contribs"], b["contribs"])
    close(a["multipliers"], b["multipliers"])


def test_batch_wrapper_matches_single():
    rng = np.random.default_rng(2)
    layers, shape = net_conv1d(rng)
    xs = rng.normal(size=(3, *shape))
    ref = rng.normal(size=shape)
    batch = dl.deeplift_batch(layers, xs, ref, 1, "genomics_default")
    for i in range(3):
        single = dl.deeplift(layers, xs[i], ref, 1, "genomics_default")
        close(batch["contribs"][i], single["contribs"], atol=0)
        assert batch["delta_t"][i] == single["delta_t"]


# --------------------------------------------------------------------------- torch adapter


def _randomise_bn(bn, gen):
    import torch

    with torch.no_grad():
        c = bn.num_features
        bn.weight.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
        bn.weight[0] = -abs(bn.weight[0])
        bn.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
        bn.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
def test_from_torch_forward_matches_torch():
    torch = pytest.importorskip("torch")
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    seq1 = (
        nn.Sequential(
            nn.Conv1d(2, 3, 3, padding=1),
            nn.BatchNorm1d(3),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(3, 4, 4, padding="same"),
            nn.Tanh(),
            nn.Dropout(0.5),
            nn.Conv1d(4, 4, 2, stride=2),
            nn.Softplus(beta=2.0),
            dl.torch_global_avg_pool1d(),
            nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.LeakyReLU(0.2)),
            nn.Linear(5, 3),
        )
        .double()
        .eval()
    )
    seq2 = (
        nn.Sequential(
            nn.Conv2d(1, 2, (2, 3), stride=(1, 2), padding=(1, 0)),
            nn.BatchNorm2d(2),
            nn.Sigmoid(),
            nn.MaxPool2d(2, 1),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(6, 4),
            nn.ReLU(),
            nn.Identity(),
            nn.Linear(4, 2),
        )
        .double()
        .eval()
    )
    seq3 = (
        nn.Sequential(
            nn.Conv1d(2, 3, 3),
            nn.ReLU(),
            nn.AvgPool1d(2, 1),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(3, 2),
        )
        .double()
        .eval()
    )
    for seq, shape in [(seq1, (2, 8)), (seq2, (1, 6, 7)), (seq3, (2, 9))]:
        for m in seq.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                _randomise_bn(m, gen)
        layers = dl.from_torch(seq)
        assert not any(type(layer).__name__ == "Dropout" for layer in layers)
        xs = torch.randn(4, *shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            expected = seq(xs).numpy()
        got = np.stack([dl.forward(layers, x) for x in xs.numpy()])
        close(got, expected, atol=1e-12)
        ref = xs[0].numpy() * 0.3
        for rule in ("rescale", "reveal_cancel"):
            out = dl.deeplift(layers, xs[1].numpy(), ref, 1, rule)
            assert abs(out["contribs"].sum() - out["delta_t"]) < 1e-10


def test_from_torch_rejects_unsupported():
    pytest.importorskip("torch")
    from torch import nn

    with pytest.raises(TypeError):
        dl.from_torch(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 1)))
    with pytest.raises(TypeError):
        dl.from_torch(nn.Sequential(nn.MaxPool1d(2, padding=1)))
