"""How much of a task-order study's goal verdict survives a re-draw of the training seeds.

The study compares methods by three numbers over K task orders, each order's ACC being the
mean of its S training seeds: the mean over orders, the worst order and the across-order std.
With S = 3 the seed noise within an order (≈0.1–0.3 points) is as large as the gaps the goals
ask about, so a True/False verdict alone says little. :func:`goal_support` resamples the seeds
of every order with replacement (Efron's bootstrap), recomputes the three numbers for every
method and counts how often each comparison of the goal holds:

* ``mean``: mean_o ACC_nai(o) ≥ max_b mean_o ACC_b(o),
* ``worst``: min_o ACC_nai(o) ≥ max_b min_o ACC_b(o),
* ``std``: std_o ACC_nai(o) ≤ min_b std_o ACC_b(o),

with b over the baselines, the best baseline recomputed in every replicate. The resampling
is *paired*: one draw of seed indices per order serves every method, because runs of one
seed share the initial weights and the batch order, so their differences are less noisy than
their levels. Only the seeds every method ran on an order are used.

It measures seed noise only: the task orders and the frozen hyperparameters are held fixed
(the tuning's own noise is not in it), and with S = 3 there are just 10 distinct resamples
of an order, so the fractions are coarse. A fraction near 1 or 0 says the verdict would
stand with other seeds; one near 0.5 says the data cannot decide it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: acc[method][order][seed] = final ACC (%) of that run
AccTable = Mapping[str, Mapping[tuple[int, ...], Mapping[int, float]]]


def acc_table(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[tuple[int, ...], dict[int, float]]]:
    """acc[method][order][seed] from run records (``method``, ``order``, ``seed``, ``acc``)."""
    table: dict[str, dict[tuple[int, ...], dict[int, float]]] = {}
    for r in records:
        table.setdefault(r["method"], {}).setdefault(tuple(r["order"]), {})[
            int(r.get("seed", 0))] = float(r["acc"])
    return table


def goal_support(acc: AccTable, method: str, baselines: Sequence[str], n_boot: int = 2000,
                 seed: int = 0) -> dict[str, Any] | None:
    """Fraction of paired seed-bootstrap replicates in which ``method`` meets each goal.

    Args:
        acc: acc[method][order][seed] = final ACC of that run.
        method: the method under test (an NAI variant).
        baselines: the methods it must match (EWC, SI, MAS); at least one.
        n_boot: bootstrap replicates.
        seed: seed of the resampling.

    Returns:
        ``None`` when fewer than 2 seeds are common to every method on some order (nothing to
        resample), else a dict with ``n_boot``, ``seeds_per_order`` (the common seeds used),
        ``mean`` / ``worst`` / ``std`` / ``all`` (fractions of replicates in which that
        comparison, or all three, holds), and ``mean_diff`` / ``worst_diff`` (``method``
        minus the best baseline) and ``std_diff`` (``method`` minus the smallest baseline std),
        each as its value on the data and the 2.5 % and 97.5 % quantiles of the replicates.

    Raises:
        ValueError: no baselines, a method missing from ``acc``, or methods run on different
            task orders.
    """
    if not baselines:
        raise ValueError("goal_support needs at least one baseline method")
    methods = [method, *baselines]
    missing = [m for m in methods if m not in acc]
    if missing:
        raise ValueError(f"goal_support: no runs of {', '.join(missing)}")
    orders = sorted(acc[method])
    for m in baselines:
        if sorted(acc[m]) != orders:
            raise ValueError(f"goal_support: {m} and {method} were run on different task "
                             f"orders ({sorted(acc[m])} vs {orders})")
    common = [sorted(set.intersection(*(set(acc[m][o]) for m in methods))) for o in orders]
    if min(len(s) for s in common) < 2:
        return None
    rng = np.random.default_rng(seed)
    # runs[m][k] = the ACCs of order k over its common seeds, in one seed order for all methods
    runs = {m: [np.array([acc[m][o][s] for s in common[k]]) for k, o in enumerate(orders)]
            for m in methods}
    draws = [rng.integers(0, len(s), size=(n_boot, len(s))) for s in common]

    def stats(idx: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """idx[k][b] = the seed indices of order k in replicate b -> (3, replicates) per method."""
        out = {}
        for m in methods:
            # per_order[b, k]: order k's mean ACC in replicate b
            per_order = np.stack([runs[m][k][idx[k]].mean(axis=-1)
                                  for k in range(len(orders))], axis=-1)
            out[m] = np.stack([per_order.mean(-1), per_order.min(-1), per_order.std(-1)])
        return out

    observed = stats([np.arange(len(s))[None, :] for s in common])  # one replicate: the data
    boot = stats(draws)

    def diffs(s: dict[str, np.ndarray]) -> np.ndarray:
        best_mean = np.max([s[b][0] for b in baselines], axis=0)
        best_worst = np.max([s[b][1] for b in baselines], axis=0)
        low_std = np.min([s[b][2] for b in baselines], axis=0)
        return np.stack([s[method][0] - best_mean, s[method][1] - best_worst,
                         s[method][2] - low_std])

    d_obs, d_boot = diffs(observed), diffs(boot)
    # the study's own rule (≥ / ≤), with a float tolerance so a tie counts as met
    tol = 1e-9
    met = np.stack([d_boot[0] >= -tol, d_boot[1] >= -tol, d_boot[2] <= tol])
    out: dict[str, Any] = {"n_boot": int(n_boot),
                           "seeds_per_order": [list(map(int, s)) for s in common]}
    for i, name in enumerate(("mean", "worst", "std")):
        out[name] = float(met[i].mean())
        out[f"{name}_diff"] = {"value": float(d_obs[i, 0]),
                               "ci95": [float(np.quantile(d_boot[i], 0.025)),
                                        float(np.quantile(d_boot[i], 0.975))]}
    out["all"] = float(met.all(axis=0).mean())
    return out
