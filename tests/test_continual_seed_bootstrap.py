"""The paired seed bootstrap of a task-order study's goals (``continual.seed_bootstrap``)."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_importance.continual.seed_bootstrap import acc_table, goal_support

ORDERS = [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)]


def _table(rng: np.random.Generator, shift: dict[str, float], seed_noise: float = 1.0,
           own_noise: float = 0.0, seeds: int = 5) -> dict:
    """acc[m][o][s] = 90 + order effect + shared seed noise + shift[m] (+ own noise)."""
    order_effect = rng.normal(0, 0.3, len(ORDERS))
    shared = rng.normal(0, seed_noise, (len(ORDERS), seeds))
    return {m: {o: {s: 90 + order_effect[k] + shared[k, s] + d
                    + own_noise * rng.standard_normal() for s in range(seeds)}
                for k, o in enumerate(ORDERS)} for m, d in shift.items()}


def _study_numbers(acc: dict, m: str) -> tuple[float, float, float]:
    per_order = [np.mean(list(acc[m][o].values())) for o in ORDERS]
    return float(np.mean(per_order)), float(np.min(per_order)), float(np.std(per_order))


def test_observed_differences_are_the_study_comparisons() -> None:
    rng = np.random.default_rng(1)
    acc = _table(rng, {"nai": 0.0, "si": 0.1, "mas": -0.2}, own_noise=0.2)
    sup = goal_support(acc, "nai", ["si", "mas"], n_boot=200)
    nai, si, mas = (_study_numbers(acc, m) for m in ("nai", "si", "mas"))
    assert sup["mean_diff"]["value"] == pytest.approx(nai[0] - max(si[0], mas[0]))
    assert sup["worst_diff"]["value"] == pytest.approx(nai[1] - max(si[1], mas[1]))
    assert sup["std_diff"]["value"] == pytest.approx(nai[2] - min(si[2], mas[2]))
    for k in ("mean", "worst", "std"):
        lo, hi = sup[f"{k}_diff"]["ci95"]
        assert lo <= hi
    assert 0.0 <= sup["all"] <= min(sup["mean"], sup["worst"], sup["std"])
    assert sup["n_boot"] == 200 and sup["seeds_per_order"] == [list(range(5))] * len(ORDERS)


def test_pairing_keeps_a_constant_lead_certain_under_large_seed_noise() -> None:
    """A method 0.01 above the baseline in every paired run wins every replicate.

    Resampled independently, a 0.01 lead under seed noise of std 1 would win about half.
    """
    acc = _table(np.random.default_rng(2), {"nai": 0.01, "si": 0.0}, seed_noise=1.0)
    sup = goal_support(acc, "nai", ["si"], n_boot=500)
    assert sup["mean"] == 1.0 and sup["worst"] == 1.0
    # equal order-to-order spread: the std comparison is a tie, which the ≤ rule counts as met
    assert sup["std"] == 1.0 and sup["all"] == 1.0
    assert sup["mean_diff"]["ci95"] == pytest.approx([0.01, 0.01])


def test_a_clear_deficit_is_never_met_and_noise_splits_the_replicates() -> None:
    rng = np.random.default_rng(3)
    behind = _table(rng, {"nai": -1.0, "si": 0.0}, seed_noise=0.1)
    sup = goal_support(behind, "nai", ["si"], n_boot=300)
    assert sup["mean"] == 0.0 and sup["worst"] == 0.0 and sup["all"] == 0.0
    # two methods that differ only by independent noise: the mean comparison is undecided
    level = _table(rng, {"nai": 0.0, "si": 0.0}, seed_noise=0.0, own_noise=0.3, seeds=8)
    undecided = goal_support(level, "nai", ["si"], n_boot=2000)
    assert 0.02 < undecided["mean"] < 0.98


def test_only_the_seeds_common_to_every_method_are_resampled() -> None:
    acc = _table(np.random.default_rng(4), {"nai": 0.0, "si": 0.0}, seeds=3)
    acc["si"][ORDERS[0]][7] = 50.0  # a seed only SI ran on order 0: left out
    sup = goal_support(acc, "nai", ["si"], n_boot=50)
    assert sup["seeds_per_order"][0] == [0, 1, 2]
    assert sup["mean_diff"]["value"] == pytest.approx(0.0)


def test_one_seed_gives_none_and_bad_inputs_raise() -> None:
    acc = _table(np.random.default_rng(5), {"nai": 0.0, "si": 0.0}, seeds=1)
    assert goal_support(acc, "nai", ["si"]) is None
    acc = _table(np.random.default_rng(5), {"nai": 0.0, "si": 0.0}, seeds=2)
    with pytest.raises(ValueError, match="baseline"):
        goal_support(acc, "nai", [])
    with pytest.raises(ValueError, match="mas"):
        goal_support(acc, "nai", ["si", "mas"])
    del acc["si"][ORDERS[-1]]
    with pytest.raises(ValueError, match="different task orders"):
        goal_support(acc, "nai", ["si"])


def test_acc_table_from_run_records() -> None:
    recs = [{"method": "si", "order": [1, 0], "seed": 2, "acc": 99.5},
            {"method": "si", "order": [1, 0], "acc": 98.0}]
    assert acc_table(recs) == {"si": {(1, 0): {2: 99.5, 0: 98.0}}}
