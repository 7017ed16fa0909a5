"""Task streams from IDX files and the ``reproduce continual`` study, on synthetic IDX data.

The data are made here (10 classes, a bright bar per class plus noise, written as MNIST-named
IDX files) so the tests run without the shared data folder; one test also checks the real
MNIST stream when the shared folder is present.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_importance.cli.main import main
from neuron_importance.cli.reproduce import EXPERIMENTS
from neuron_importance.continual import make_stream
from neuron_importance.data.idx import write_idx
from neuron_importance.experiments.continual import (
    RunSpec,
    StudySettings,
    _execute,
    headline,
    run_study,
    task_orders,
)

N_TRAIN, N_TEST = 800, 200


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rng.integers(0, 60, size=(len(labels), 28, 28))
    for i, c in enumerate(labels):
        x[i, 2 + 2 * c: 4 + 2 * c, 4:24] = 255  # class c: a bar at row 2 + 2c
    return x.astype(np.uint8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for sub in ("mnist", "fashion-mnist"):
        d = root / sub
        d.mkdir()
        for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
            y = (np.arange(n) % 10).astype(np.uint8)
            rng.shuffle(y)
            # names without .gz: only the real gzip files are checksum-verified
            write_idx(d / f"{split}-images-idx3-ubyte", _images(y, rng))
            write_idx(d / f"{split}-labels-idx1-ubyte", y)
    return root


# ----------------------------------------------------------------------------- streams


def test_split_stream_pairs_labels_and_validation(data_root: Path) -> None:
    s = make_stream("split-mnist", data_dir=data_root, val_fraction=0.25)
    assert len(s) == 5 and not s.shared_head and s.head_sizes == (2,) * 5
    for t, task in enumerate(s.tasks):
        assert task.classes == (2 * t, 2 * t + 1)
        assert set(task.yg_train.tolist()) == {2 * t, 2 * t + 1}
        assert torch.equal(task.y_train, (task.yg_train == 2 * t + 1).long())
        n = task.x_train.shape[0] + task.x_val.shape[0]
        assert n == N_TRAIN // 5 and task.x_val.shape[0] == round(0.25 * n)
        assert task.x_train.shape[1] == 784 and task.x_test.shape[0] == N_TEST // 5
    # standardised with the MNIST constants: a 0 pixel maps to -0.1307 / 0.3081
    raw0 = s.tasks[0].x_train.min().item()
    assert raw0 == pytest.approx(-0.1307 / 0.3081, rel=1e-5)


def test_permuted_stream_and_orders(data_root: Path) -> None:
    s = make_stream("permuted-mnist", data_dir=data_root, n_tasks=3)
    assert s.shared_head and len(s) == 3
    a, b = s.tasks[0].x_test, s.tasks[1].x_test
    assert not torch.equal(a, b)
    # the same pixels, permuted: per-image sorted values agree
    torch.testing.assert_close(a.sort(1).values, b.sort(1).values)
    again = make_stream("permuted-mnist", data_dir=data_root, n_tasks=3, order=[2, 0, 1])
    assert [t.identity for t in again.tasks] == [2, 0, 1]
    torch.testing.assert_close(again.tasks[0].x_test, make_stream(
        "permuted-mnist", data_dir=data_root, n_tasks=3).tasks[2].x_test)
    with pytest.raises(ValueError, match="permutation of 0..2"):
        make_stream("permuted-mnist", data_dir=data_root, n_tasks=3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="unknown benchmark"):
        make_stream("split-cifar", data_dir=data_root)


def test_task_orders_are_distinct_permutations() -> None:
    orders = task_orders(5, 5, seed=0)
    assert orders[0] == [0, 1, 2, 3, 4] and orders[1] == [4, 3, 2, 1, 0]
    assert len({tuple(o) for o in orders}) == 5
    assert all(sorted(o) == list(range(5)) for o in orders)
    assert task_orders(5, 5, seed=0) == orders


def test_real_mnist_stream_when_present() -> None:
    try:
        s = make_stream("split-mnist")
    except FileNotFoundError:
        pytest.skip("shared MNIST data not found")
    sizes = [t.x_train.shape[0] + t.x_val.shape[0] for t in s.tasks]
    assert sizes == [12665, 12089, 11263, 12183, 11800]  # MNIST digits per pair
    assert sum(t.x_test.shape[0] for t in s.tasks) == 10000


# ----------------------------------------------------------------------------- the study


def tiny_settings(**kw) -> StudySettings:
    base = dict(
        benchmarks=["split-mnist", "permuted-mnist"], methods=["finetune", "ewc", "nai"],
        n_orders=2, epochs={"split-mnist": 1, "permuted-mnist": 1},
        grids={"ewc": {"lam": [10.0, 100.0]}, "nai": {"lam": [0.1, 1.0]}},
        ablation=[{"map": "out"}], ablation_benchmarks=["split-mnist"], ablation_orders=1,
        permuted_tasks=2, hidden=(16,), batch_size=64, class_il_methods=["finetune"],
    )
    base.update(kw)
    return StudySettings(**base)


def test_study_writes_the_contract_and_resumes(tmp_path: Path, data_root: Path) -> None:
    logs: list[str] = []
    res = run_study(tmp_path, tiny_settings(), data_dir=data_root, progress=False,
                    log=logs.append)
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"runs", "summary", "orders", "tuning", "ablation", "goals"} <= set(data)
    assert len(data["runs"]) == 2 * 3 * 2  # benchmarks x methods x orders
    for r in data["runs"]:
        assert {"benchmark", "method", "order", "acc", "bwt", "forgetting",
                "acc_matrix"} <= set(r)
        t = len(r["order"])
        assert np.array(r["acc_matrix"]).shape == (t, t)
        assert r["acc"] == pytest.approx(np.mean(r["acc_matrix"][-1]))
    for b in ("split-mnist", "permuted-mnist"):
        for m in ("finetune", "ewc", "nai"):
            s = data["summary"][b][m]
            accs = [r["acc"] for r in data["runs"] if r["benchmark"] == b and r["method"] == m]
            assert s["mean"] == pytest.approx(np.mean(accs))
            assert s["worst"] == pytest.approx(min(accs))
            assert s["std"] == pytest.approx(np.std(accs))
    # the chosen λ is the grid point with the best validation accuracy on order 0
    tun = data["tuning"]["split-mnist"]["ewc"]
    best = max(tun, key=lambda p: p["val_acc"])["hyperparameters"]
    assert data["chosen_hyperparameters"]["split-mnist"]["ewc"] == best
    assert set(data["ablation"]["split-mnist"]) == {"default", "map=out"}
    for f in res["files"]:
        assert (tmp_path / f).stat().st_size > 0
    assert (tmp_path / "acc_by_order.png").read_bytes()[:4] == b"\x89PNG"
    assert {r["device"] for r in data["runs"]} == {"cpu"}  # each run names where it trained
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # cleaned after each run
    n_lines = len((tmp_path / "runs.jsonl").read_text().splitlines())

    # order 0 at the chosen strength (main runs, the ablation's default) is the tuning run
    # of that strength: copied, not trained again
    recs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    by_key = {r["key"]: r for r in recs}
    reused = [r for r in recs if "reused_from" in r]
    assert {(r["benchmark"], r["method"], r["phase"]) for r in reused} == {
        (b, m, "main") for b in ("split-mnist", "permuted-mnist") for m in ("ewc", "nai")
    } | {("split-mnist", "nai", "ablation")}
    for r in reused:
        src = by_key[r["reused_from"]]
        assert src["phase"] == "tune" and src["order"] == r["order"] == data["orders"][
            r["benchmark"]][0]
        assert src["hyperparameters"] == r["hyperparameters"]
    # results.json says which main runs are copies
    assert sorted((r["benchmark"], r["method"]) for r in data["runs"] if "reused_from" in r) \
        == sorted((r["benchmark"], r["method"]) for r in reused if r["phase"] == "main")
    assert data["seconds"]["sum_of_run_seconds"] == pytest.approx(
        sum(r["seconds"] for r in recs if "reused_from" not in r), abs=0.1)
    # and the copy is what training that run afresh gives
    settings = tiny_settings()
    r = next(r for r in reused if r["phase"] == "main" and r["method"] == "nai")
    spec = RunSpec("main", r["benchmark"], "nai", tuple(r["order"]),
                   tuple(sorted(r["hyperparameters"].items())),
                   settings.epochs[r["benchmark"]], "task")
    assert spec.key(settings) == r["key"]
    fresh = _execute(spec, settings, str(data_root), str(tmp_path / "checkpoints"), "fresh")
    assert fresh["acc_matrix"] == r["acc_matrix"]

    # a second call recomputes nothing
    logs.clear()
    again = run_study(tmp_path, tiny_settings(), data_dir=data_root, progress=False,
                      log=logs.append)
    assert logs[0].startswith(f"resuming: {n_lines} finished runs")
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == n_lines
    assert again["summary"] == res["summary"]
    # the rerun keeps the first invocation's wall time beside its own
    first = res["seconds"]["total_this_invocation"]
    assert res["seconds"]["earlier_invocations"] == []
    assert again["seconds"]["earlier_invocations"] == [first]
    assert again["seconds"]["total_all_invocations"] == pytest.approx(
        first + again["seconds"]["total_this_invocation"], abs=0.1)
    assert "all 2 invocations into this folder" in (tmp_path / "report.md").read_text()
    # a tuning run missing from runs.jsonl while the main run of that point is there (a
    # screen appended beside the study, say) is copied from it, not trained
    ewc_main = next(r for r in reused if r["phase"] == "main" and r["method"] == "ewc")
    tune_key = ewc_main["reused_from"]
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    (tmp_path / "runs.jsonl").write_text("".join(
        line + "\n" for line in lines if json.loads(line)["key"] != tune_key))
    run_study(tmp_path, tiny_settings(), data_dir=data_root, progress=False)
    redone = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()
              if json.loads(line)["key"] == tune_key]
    assert len(redone) == 1 and redone[0]["phase"] == "tune"
    assert redone[0]["reused_from"] == ewc_main["key"]
    assert redone[0]["acc_matrix"] == by_key[tune_key]["acc_matrix"]
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == n_lines  # none trained


def test_seeds_per_order_average_before_the_order_statistics(tmp_path: Path,
                                                             data_root: Path) -> None:
    """With ``seeds=2`` each order's ACC is the mean of its seeds; seed 0 reuses 1-seed runs."""
    one = tiny_settings(benchmarks=["split-mnist"], methods=["nai", "ewc"],
                        ablation_benchmarks=[], class_il_methods=[],
                        grids={"ewc": {"lam": [10.0, 100.0]}, "nai": {"lam": [1.0]}},
                        max_extensions=0)
    first = run_study(tmp_path, one, data_dir=data_root, progress=False, log=lambda m: None)
    n_one = len((tmp_path / "runs.jsonl").read_text().splitlines())
    res = run_study(tmp_path, replace(one, seeds=2), data_dir=data_root, progress=False,
                    log=lambda m: None)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    # every seed-0 run of the 1-seed study is reused; seed 0 is trained again only where
    # the seed-averaged tuning chose another λ
    lam_1 = first["chosen_hyperparameters"]["split-mnist"]["ewc"]
    for r in recs[n_one:]:
        assert r["seed"] == 1 or (r["phase"] == "main" and r["method"] == "ewc"
                                  and r["hyperparameters"] != lam_1)
    assert sorted({r["seed"] for r in recs}) == [0, 1]
    runs = res["runs"]
    assert len(runs) == 2 * 2 * 2  # methods x orders x seeds
    for m in ("nai", "ewc"):
        per_order = {}
        for r in runs:
            if r["method"] == m:
                per_order.setdefault(tuple(r["order"]), []).append(r["acc"])
        assert all(len(v) == 2 for v in per_order.values())
        means = [np.mean(v) for v in per_order.values()]
        s = res["summary"]["split-mnist"][m]
        assert s["n_seeds"] == 2 and s["n_orders"] == 2
        assert s["mean"] == pytest.approx(np.mean(means))
        assert s["std"] == pytest.approx(np.std(means))
        assert s["worst"] == pytest.approx(min(means))
        assert s["seed_std"] == pytest.approx(np.mean([np.std(v) for v in per_order.values()]))
    # tuning chooses by the validation ACC averaged over the seeds
    tun = res["tuning"]["split-mnist"]["ewc"]
    for p in tun:
        twins = [r["val_acc"] for r in recs if r["phase"] == "tune" and r["method"] == "ewc"
                 and r["hyperparameters"] == p["hyperparameters"]]
        assert len(twins) == 2 and p["val_acc"] == pytest.approx(np.mean(twins))
    best = max(tun, key=lambda p: p["val_acc"])["hyperparameters"]
    assert res["chosen_hyperparameters"]["split-mnist"]["ewc"] == best
    report = (tmp_path / "report.md").read_text()
    assert "seed std" in report
    # per task identity: R[i][i] and R[T][i] at the task's position, seeds then orders averaged
    for m in ("nai", "ewc"):
        cells: dict[str, dict[tuple[int, ...], list[tuple[float, float]]]] = {}
        for r in runs:
            if r["method"] == m:
                a = np.asarray(r["acc_matrix"])
                for i, t in enumerate(r["order"]):
                    cells.setdefault(str(t), {}).setdefault(tuple(r["order"]), []).append(
                        (a[i, i], a[-1, i]))
        pt = res["summary"]["split-mnist"][m]["per_task"]
        assert sorted(pt) == sorted(cells)
        for t, by_order in cells.items():
            learned = np.mean([np.mean([c[0] for c in v]) for v in by_order.values()])
            final = np.mean([np.mean([c[1] for c in v]) for v in by_order.values()])
            assert pt[t]["learned"] == pytest.approx(learned)
            assert pt[t]["final"] == pytest.approx(final)
            assert pt[t]["lost"] == pytest.approx(learned - final)
    pt = res["summary"]["split-mnist"]["ewc"]["per_task"]
    assert "accuracy right after learning it → at the end" in report
    assert (f"| ewc | {pt['0']['learned']:.2f} → {pt['0']['final']:.2f} | "
            f"{pt['1']['learned']:.2f} → {pt['1']['final']:.2f} |") in report
    # the seed bootstrap of the goals: its observed differences are the summary's
    sup = res["goal_support"]["split-mnist"]["nai"]
    s_nai, s_ewc = res["summary"]["split-mnist"]["nai"], res["summary"]["split-mnist"]["ewc"]
    assert sup["mean_diff"]["value"] == pytest.approx(s_nai["mean"] - s_ewc["mean"])
    assert sup["worst_diff"]["value"] == pytest.approx(s_nai["worst"] - s_ewc["worst"])
    assert sup["std_diff"]["value"] == pytest.approx(s_nai["std"] - s_ewc["std"])
    assert sup["seeds_per_order"] == [[0, 1], [0, 1]]
    assert all(0.0 <= sup[k] <= 1.0 for k in ("mean", "worst", "std", "all"))
    assert "Seed bootstrap of nai's goals" in report
    # the report's goal line is the CLI's: each verdict with its figures to three decimals
    g = res["goals"]["split-mnist"]
    verdict = "met" if g["nai_mean_at_or_above_best_baseline"] else "MISSED"
    assert (f"- nai: ACC >= 99.7: {'met' if g['nai_meets_acc_goal'] else 'MISSED'}"
            in report)
    assert (f"mean >= best baseline's: {verdict} ({s_nai['mean']:.3f} vs "
            f"{s_ewc['mean']:.3f})") in report
    with pytest.raises(ValueError, match="seeds"):
        run_study(tmp_path, replace(one, seeds=0), data_dir=data_root, progress=False,
                  log=lambda m: None)


def test_bad_study_settings_fail_before_training(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        run_study(tmp_path, tiny_settings(grids={"ewc": {"lam": [-1.0]}}), data_dir=data_root,
                  progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="unknown method 'hat'"):
        run_study(tmp_path, tiny_settings(methods=["hat"]), data_dir=data_root,
                  progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="norm='l1' is not one of"):
        run_study(tmp_path, tiny_settings(ablation=[{"norm": "l1"}]), data_dir=data_root,
                  progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        run_study(tmp_path, tiny_settings(dropout=1.5), data_dir=data_root,
                  progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="permuted-mnist has one shared head"):
        run_study(tmp_path, tiny_settings(head_warmup=1, benchmarks=["permuted-mnist"],
                                          class_il_methods=[]),
                  data_dir=data_root, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="class-incremental runs train one shared head"):
        run_study(tmp_path, tiny_settings(head_warmup=1, benchmarks=["split-mnist"],
                                          class_il_methods=["finetune"]),
                  data_dir=data_root, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="device 'gpu0' is not a torch device"):
        run_study(tmp_path, tiny_settings(device="gpu0"), data_dir=data_root,
                  progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="runs on 'cpu' or 'cuda"):
        run_study(tmp_path, tiny_settings(device="meta"), data_dir=data_root,
                  progress=False, log=lambda m: None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            run_study(tmp_path, tiny_settings(device="cuda"), data_dir=data_root,
                      progress=False, log=lambda m: None)
    assert not (tmp_path / "runs.jsonl").exists()


def test_cli_quick_contract_and_errors(tmp_path: Path, data_root: Path, capsys) -> None:
    assert "continual" in EXPERIMENTS
    out = tmp_path / "out"
    code = main(["reproduce", "continual", "--quick", "--quiet", "--out", str(out),
                 "--data-dir", str(data_root), "--benchmarks", "split-mnist",
                 "--methods", "finetune,nai", "--orders", "2", "--epochs", "2",
                 "--no-class-il", "--dropout", "0.25", "--hidden", "32,16", "--head-warmup", "1",
                 "--max-extensions", "0", "--grid", "nai:lam=0.5", "--grid", "nai:floor=0.01",
                 "--nai-option", "conductance_target=centred",
                 "--nai-option", "conductance_steps=8", "--nai-option", "nai:norm=max",
                 "--nai-option", "nai-tc:norm=rank"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    # --nai-option reaches the settings and every NAI run's hyperparameters (and its key)
    assert data["settings"]["nai_options"] == {"conductance_target": "centred",
                                               "conductance_steps": 8}
    # and a METHOD: prefix to that method only (nai-tc is not in this study)
    assert data["settings"]["method_nai_options"] == {"nai": {"norm": "max"},
                                                      "nai-tc": {"norm": "rank"}}
    assert all(r["hyperparameters"]["conductance_target"] == "centred"
               and r["hyperparameters"]["conductance_steps"] == 8
               and r["hyperparameters"]["norm"] == "max"
               for r in data["runs"] if r["method"] == "nai")
    # the fixed grid is the only point tuned, and it is what the orders run with
    assert [t["hyperparameters"]["lam"] for t in data["tuning"]["split-mnist"]["nai"]] == [0.5]
    assert data["chosen_hyperparameters"]["split-mnist"]["nai"]["lam"] == 0.5
    # a second --grid of the same method adds a parameter instead of replacing the first
    assert [t["hyperparameters"]["floor"] for t in data["tuning"]["split-mnist"]["nai"]] == [0.01]
    assert {r["hyperparameters"]["floor"] for r in data["runs"] if r["method"] == "nai"} == {0.01}
    assert "- nai: lam=0.5, floor=0.01: " in (out / "report.md").read_text()
    assert "| floor=0.01, lam=0.5 |" in (out / "report.md").read_text()
    assert {r["hyperparameters"]["lam"] for r in data["runs"] if r["method"] == "nai"} == {0.5}
    assert data["settings"]["epochs"]["split-mnist"] == 2
    assert data["settings"]["dropout"] == 0.25
    assert data["settings"]["hidden"] == [32, 16]
    assert "dropout 0.25 after each hidden layer" in (out / "report.md").read_text()
    assert data["settings"]["head_warmup"] == 1
    assert data["settings"]["max_extensions"] == 0
    assert "1 epoch(s) of training each new head alone" in (out / "report.md").read_text()
    assert data["class_incremental"] == {}
    assert set(data["summary"]) == {"split-mnist"}
    assert set(data["summary"]["split-mnist"]) == {"finetune", "nai"}
    assert all(len(r["order"]) == 5 for r in data["runs"]) and len(data["runs"]) == 4
    assert (out / "report.md").read_text().startswith("# Continual learning")
    code = main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--methods", "finetune,lwf"])
    assert code == 2
    assert "unknown method 'lwf'" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--max-extensions", "-1"]) == 2
    assert "must be an integer >= 0, got -1" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--epochs", "0"]) == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--tune-orders", "0"]) == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err
    # --quick has 2 orders: tuning cannot run on 3 of them
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--tune-orders", "3"]) == 2
    assert "tune_orders must be an int from 1 to the number of orders (2), got 3" in (
        capsys.readouterr().err)
    assert main(["reproduce", "continual", "--quick", "--dropout", "1"]) == 2
    assert "must be in [0, 1), got 1.0" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--hidden", "400,x"]) == 2
    assert "positive integers (layer widths" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--selection", "one-se"]) == 2
    assert "one-se needs the standard error" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--selection", "median"]) == 2
    assert "invalid choice: 'median'" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--grid", "nai=0.1"]) == 2
    assert "METHOD:PARAM=V1,V2" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--grid", "finetune:lam=1"]) == 2
    assert "no tuning grid for finetune" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--grid", "si:c=-1"]) == 2
    assert "-1" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--nai-option", "norm"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--nai-option", ":norm=max"]) == 2
    assert "METHOD:KEY=VALUE" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--nai-option", "si:norm=max"]) == 2
    assert "only nai and nai-tc take NAI options, got method 'si'" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--nai-option", "nai-tc:norm=huge"]) == 2
    assert "norm='huge' is not one of" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--nai-option", "conductance_target=margin"]) == 2
    assert "conductance_target='margin' is not one of" in capsys.readouterr().err
    assert main(["reproduce", "continual", "--quick", "--out", str(tmp_path / "bad"),
                 "--data-dir", str(data_root), "--nai-option", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err


def _run_cli(out: Path, data_root: Path, *extra: str) -> subprocess.Popen:
    code = (
        "import sys; from neuron_importance.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", code, "reproduce", "continual", "--quick", "--quiet",
         "--out", str(out), "--data-dir", str(data_root), "--benchmarks", "split-mnist",
         "--methods", "finetune,ewc,nai", "--orders", "2", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigterm_of_a_parallel_study_stops_its_workers(tmp_path: Path, data_root: Path) -> None:
    p = _run_cli(tmp_path, data_root, "--jobs", "2")
    children_file = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and len(workers) < 2:
        # the spawn resource tracker is a child too; the workers are the ones training
        kids = [int(c) for c in children_file.read_text().split()] if children_file.exists() \
            else []
        workers = [k for k in kids if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()
                   and "pipe_handle" in Path(f"/proc/{k}/cmdline").read_text()]
        time.sleep(0.05)
    if p.poll() is not None or len(workers) < 2:
        pytest.skip("no parallel phase was caught running")
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived the study"


def test_sigkill_mid_study_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, data_root: Path
) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    p = _run_cli(ref, data_root)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    p = _run_cli(killed, data_root)
    runs = killed / "runs.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if runs.exists() and len(runs.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    if p.poll() is not None:
        pytest.skip("the study finished before it could be killed")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n_before = len(runs.read_text().splitlines())
    assert 3 <= n_before
    p = _run_cli(killed, data_root)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    def by_key(path: Path) -> dict:
        return {json.loads(line)["key"]: json.loads(line) for line in
                (path / "runs.jsonl").read_text().splitlines()}

    a, b = by_key(ref), by_key(killed)
    assert set(a) == set(b)
    for k in a:
        assert a[k]["acc_matrix"] == b[k]["acc_matrix"], a[k]["method"]
    ra = json.loads((ref / "results.json").read_text())["summary"]
    rb = json.loads((killed / "results.json").read_text())["summary"]
    assert ra == rb


def test_options_for_one_nai_variant_override_the_shared_ones() -> None:
    from neuron_importance.experiments.continual import RunSpec

    settings = tiny_settings(nai_options={"norm": "rank", "stat": "abs"},
                             method_nai_options={"nai": {"norm": "max"}})
    settings.check()
    assert settings.nai_options_for("nai") == {"norm": "max", "stat": "abs"}
    assert settings.nai_options_for("nai-tc") == {"norm": "rank", "stat": "abs"}
    # the key follows the options a run resolves to, not the flag that set them
    shared = tiny_settings(nai_options={"norm": "max", "stat": "abs"})
    spec = RunSpec("tune", "split-mnist", "nai", (0, 1, 2, 3, 4),
                   (("lam", 1.0), ("norm", "max"), ("stat", "abs")), 3, "task")
    assert spec.key(settings) == spec.key(shared)
    with pytest.raises(ValueError, match="only nai and nai-tc take them"):
        tiny_settings(method_nai_options={"ewc": {"norm": "max"}}).check()
    with pytest.raises(ValueError, match="norm='huge'"):
        tiny_settings(methods=["nai-tc"], grids={"nai-tc": {"lam": [1.0]}},
                      method_nai_options={"nai-tc": {"norm": "huge"}}).check()


def test_append_runs_trains_what_is_not_recorded_and_resumes(tmp_path: Path,
                                                             data_root: Path) -> None:
    from neuron_importance.experiments.continual import RunSpec, append_runs

    settings = tiny_settings(benchmarks=["split-mnist"])
    specs = [RunSpec("main", "split-mnist", "nai-tc", (4, 3, 2, 1, 0),
                     tuple(sorted(settings.hyperparameters_for("nai-tc", {"lam": lam}).items())),
                     1, "task", "", 0) for lam in (0.1, 1.0)]
    side, ckpt = tmp_path / "side.jsonl", tmp_path / "ckpt"
    assert append_runs(specs[:1], settings, side, str(data_root), ckpt) == 1
    # a key recorded in a done file or in the side file itself is not trained again
    assert append_runs(specs, settings, side, str(data_root), ckpt) == 1
    assert append_runs(specs, settings, side, str(data_root), ckpt) == 0
    recs = [json.loads(line) for line in side.read_text().splitlines()]
    assert [r["key"] for r in recs] == [s.key(settings) for s in specs]
    assert all(r["phase"] == "main" and r["hyperparameters"]["conductance_target"] == "centred"
               for r in recs)
    assert append_runs(specs, settings, tmp_path / "other.jsonl", str(data_root), ckpt,
                       done_files=[side]) == 0


def test_grid_edge_extension_rule() -> None:
    from neuron_importance.experiments.continual import _edge_extension

    def recs(best: float) -> list[dict]:
        return [{"hyperparameters": {"lam": v}, "val_acc": 90.0 + (v == best)}
                for v in (0.01, 0.1, 1.0)]

    grid = {"lam": [0.01, 0.1, 1.0]}
    assert _edge_extension(grid, recs(0.01)) == {"lam": [0.001, 0.01, 0.1, 1.0]}
    assert _edge_extension(grid, recs(1.0)) == {"lam": [0.01, 0.1, 1.0, 10.0]}
    assert _edge_extension(grid, recs(0.1)) is None  # an inner optimum stays
    assert _edge_extension({"lam": [0.0, 1.0]}, recs(0.0)) is None


def _se_table(key: str = "lam") -> list[dict]:
    """A tuning table whose best point (λ 0.1, mean 99.50, SE 0.041) has λ 0.3 within one SE
    (99.47) and λ 1 outside it (99.40)."""
    def entry(v: float, vals: list[float]) -> dict:
        return {"hyperparameters": {key: v}, "val_acc": float(np.mean(vals)), "val_accs": vals}
    # the best point's seeds: mean 99.50, sample std √(0.02 / 3) = 0.0816, SE = 0.0408
    best = [99.4, 99.6, 99.5, 99.5]
    return [entry(0.03, [99.2] * 4), entry(0.1, best), entry(0.3, [99.47] * 4),
            entry(1.0, [99.40] * 4)]


def test_one_se_selection_takes_the_strongest_penalty_within_one_standard_error() -> None:
    from neuron_importance.experiments.continual import select_point

    table = _se_table()
    se = np.std(table[1]["val_accs"], ddof=1) / 2
    assert 0.04 < se < 0.042  # λ 0.3 (0.03 below the best) is inside, λ 1 (0.10) outside
    assert select_point("nai", table, "best")["hyperparameters"] == {"lam": 0.1}
    assert select_point("nai", table, "one-se")["hyperparameters"] == {"lam": 0.3}
    # SI's strength is c: the same table keyed by c gives the same choice
    assert select_point("si", _se_table("c"), "one-se")["hyperparameters"] == {"c": 0.3}
    # a point above the best mean is the best itself; a tighter best seed spread admits less
    tight = [dict(e) for e in table]
    tight[1] = {**tight[1], "val_accs": [99.49, 99.51, 99.5, 99.5]}
    assert select_point("nai", tight, "one-se")["hyperparameters"] == {"lam": 0.1}
    one_seed = [{k: v for k, v in e.items() if k != "val_accs"} for e in table]
    with pytest.raises(ValueError, match="several training seeds"):
        select_point("nai", one_seed, "one-se")
    with pytest.raises(ValueError, match="unknown selection 'median'"):
        select_point("nai", table, "median")


def test_one_se_selection_extends_the_grid_past_a_chosen_upper_edge() -> None:
    from neuron_importance.experiments.continual import _edge_extension

    table = _se_table()[:3]  # λ 0.03, 0.1, 0.3: the best is inside, the one-SE point on top
    grid = {"lam": [0.03, 0.1, 0.3]}
    assert _edge_extension(grid, table, "nai", "best") is None
    assert _edge_extension(grid, table, "nai", "one-se") == {"lam": [0.03, 0.1, 0.3, 0.9]}


def test_one_se_selection_needs_several_seeds_and_a_known_rule() -> None:
    with pytest.raises(ValueError, match="one-se needs .* seeds >= 2"):
        tiny_settings(selection="one-se").check()
    with pytest.raises(ValueError, match="unknown selection 'mean'"):
        tiny_settings(selection="mean", seeds=2).check()
    tiny_settings(selection="one-se", seeds=2).check()


def test_one_se_study_freezes_the_rule_s_point_and_says_so(tmp_path: Path,
                                                         data_root: Path) -> None:
    from neuron_importance.experiments.continual import select_point

    settings = tiny_settings(benchmarks=["split-mnist"], methods=["ewc", "nai"], n_orders=1,
                             ablation=[], class_il_methods=[], seeds=2, selection="one-se",
                             max_extensions=0)
    res = run_study(tmp_path, settings, data_dir=data_root, progress=False,
                    log=lambda m: None)
    for m in ("ewc", "nai"):
        table = res["tuning"]["split-mnist"][m]
        assert all(len(e["val_accs"]) == 2 for e in table)
        assert (res["chosen_hyperparameters"]["split-mnist"][m]
                == select_point(m, table, "one-se")["hyperparameters"])
        assert {r["hyperparameters"]["lam"] for r in res["runs"] if r["method"] == m} == {
            res["chosen_hyperparameters"]["split-mnist"][m]["lam"]}
    assert res["settings"]["selection"] == "one-se"
    assert "the strongest penalty (one-SE rule)" in (tmp_path / "report.md").read_text()


def test_one_se_selection_on_the_fresh_split_mnist_study_moves_only_nai() -> None:
    """docs/continual.md (session 18): the seed-5 study's tuning table read with the one-SE
    rule keeps every baseline's point and moves NAI from λ 0.033 to 0.3."""
    from neuron_importance.continual import METHODS
    from neuron_importance.experiments.continual import select_point

    res = json.loads((_RESULTS / "continual-20ep-5seeds-seed5-headwarmup-fisher"
                      / "results.json").read_text())
    tuning = res["tuning"]["split-mnist"]
    picked = {m: select_point(m, t, "one-se")["hyperparameters"][METHODS[m]]
              for m, t in tuning.items()}
    assert picked == {"ewc": 3000.0, "si": 100.0, "mas": pytest.approx(0.09), "nai": 0.3}
    chosen = {m: v[METHODS[m]] for m, v in res["chosen_hyperparameters"]
              ["split-mnist"].items()}
    assert chosen["nai"] == pytest.approx(0.0333333)
    assert all(chosen[m] == pytest.approx(picked[m]) for m in ("ewc", "si", "mas"))


def test_edge_extensions_stop_at_max_extensions_and_say_so(tmp_path: Path, data_root: Path,
                                                           monkeypatch) -> None:
    import neuron_importance.experiments.continual as study

    def always_lower(grid, recs, *rule):  # as if the lowest point always won
        return {"lam": [min(grid["lam"]) / 10, *grid["lam"]]}

    monkeypatch.setattr(study, "_edge_extension", always_lower)
    logs: list[str] = []
    res = run_study(tmp_path, tiny_settings(benchmarks=["split-mnist"], methods=["ewc"],
                                            n_orders=1, grids={"ewc": {"lam": [10.0]}},
                                            ablation=[], class_il_methods=[],
                                            max_extensions=1),
                    data_dir=data_root, progress=False, log=logs.append)
    tuned = [p["hyperparameters"]["lam"] for p in res["tuning"]["split-mnist"]["ewc"]]
    assert sorted(tuned) == [1.0, 10.0]  # one extension run, no second one announced
    assert sum("grid extended to" in m for m in logs) == 1
    assert sum("still on the edge after 1 extension(s); kept" in m for m in logs) == 1


def test_nai_run_keys_follow_the_resolved_option_defaults(monkeypatch) -> None:
    """A change of NAI's defaults must not let a resumed study reuse runs made with the old ones."""
    from dataclasses import dataclass

    import neuron_importance.continual as continual
    from neuron_importance.experiments.continual import RunSpec

    settings = StudySettings.quick_mode()
    nai = RunSpec("tune", "split-mnist", "nai", (0, 1, 2, 3, 4), (("lam", 1.0),), 3, "task")
    ewc = RunSpec("tune", "split-mnist", "ewc", (0, 1, 2, 3, 4), (("lam", 1.0),), 3, "task")
    before_nai, before_ewc = nai.key(settings), ewc.key(settings)
    @dataclass(frozen=True)
    class OtherDefaults(continual.NAIOptions):
        stat: str = "abs"

    tc = RunSpec("tune", "split-mnist", "nai-tc", (0, 1, 2, 3, 4), (("lam", 1.0),), 3, "task")
    before_tc = tc.key(settings)
    assert before_tc != before_nai
    # make_strategy resolves the options, so the defaults are patched where it reads them
    monkeypatch.setattr(continual.trainer, "NAIOptions", OtherDefaults)
    assert nai.key(settings) != before_nai
    assert tc.key(settings) != before_tc
    assert ewc.key(settings) == before_ewc


def test_nai_tc_default_target_and_the_keys_of_runs_recorded_before(tmp_path: Path,
                                                                     data_root: Path,
                                                                     monkeypatch) -> None:
    """nai-tc explains the centred logit by default; its runs name the target, a run written
    out as ``logit`` keeps the key it had when logit was the default, and the study's default
    reuses the runs made with ``--nai-option conductance_target=centred``."""
    import neuron_importance.continual as continual
    from neuron_importance.experiments.continual import RunSpec

    settings = StudySettings.quick_mode()

    def key(*hp: tuple[str, object]) -> str:
        return RunSpec("tune", "split-mnist", "nai-tc", (0, 1, 2, 3, 4),
                       tuple(sorted((("lam", 1.0), *hp))), 3, "task").key(settings)

    logit, centred, default = (key(("conductance_target", "logit")),
                               key(("conductance_target", "centred")), key())
    assert len({logit, centred, default}) == 3
    with monkeypatch.context() as m:  # the defaults before session 10
        m.setattr(continual.trainer, "NAI_TC_DEFAULTS", {})
        assert key() == logit  # the old record (no target named) keeps its key
    # the study writes the default out, so its nai-tc runs are the explicitly centred ones
    run_study(tmp_path, tiny_settings(benchmarks=["split-mnist"], methods=["nai-tc"],
                                      n_orders=1, grids={"nai-tc": {"lam": [0.1]}},
                                      ablation=[], class_il_methods=[]),
              data_dir=data_root, progress=False, log=lambda m: None)
    recs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert recs and all(r["hyperparameters"]["conductance_target"] == "centred" for r in recs)
    # the floor's default (0.003, not its key-neutral 0) is written out too
    assert all(r["hyperparameters"]["floor"] == 0.003 for r in recs)
    # a conductance switch given to a study with nai is flagged: nai ignores it
    logs: list[str] = []
    with pytest.raises(ValueError, match="unknown method"):  # stops before any training
        run_study(tmp_path / "x", tiny_settings(methods=["nai", "bogus"],
                                                nai_options={"conductance_target": "logit"}),
                  data_dir=data_root, progress=False, log=logs.append)
    assert not logs
    run_study(tmp_path / "y", tiny_settings(benchmarks=["split-mnist"], methods=["nai"],
                                            n_orders=1, grids={"nai": {"lam": [0.1]}},
                                            ablation=[], class_il_methods=[],
                                            nai_options={"conductance_target": "logit"}),
              data_dir=data_root, progress=False, log=logs.append)
    assert any("conductance_target only act with source='conductance'" in m for m in logs)
    no_ablation = json.loads((tmp_path / "y" / "results.json").read_text())
    assert no_ablation["ablation"] == {}  # no variants: not even the default is trained
    y_recs = [json.loads(line)
              for line in (tmp_path / "y" / "runs.jsonl").read_text().splitlines()]
    assert "ablation" not in {r["phase"] for r in y_recs}
    assert {r["phase"] for r in y_recs} >= {"main"}
    assert all(r["hyperparameters"]["floor"] == 0.003 for r in y_recs)  # nai names it too
    # a record without the floor predates it: rebuilt at floor 0, so it is not the run at
    # the new default (the committed-keys test checks that such records keep their keys)
    old = {**y_recs[0], "hyperparameters": {"lam": 0.1, "conductance_target": "logit"}}
    settings = StudySettings.from_saved(no_ablation["settings"])
    old_spec = RunSpec.from_record(old, settings)
    assert dict(old_spec.hyperparameters)["floor"] == 0.0
    assert old_spec.key(settings) != y_recs[0]["key"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["nai_tc_options"]["conductance_target"] == "centred"


_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
# committed study folders and the fewest runs each must hold (a truncated file fails)
_COMMITTED_STUDIES = {"continual": 100, "continual-3seeds": 100, "continual-20ep": 100,
                      "continual-permuted-dropout": 30, "continual-permuted-dropout-10ep": 30,
                      "continual-permuted-dropout-10ep-2seeds": 30,
                      "continual-20ep-3seeds": 150, "continual-fmnist-centred-3seeds": 250,
                      "continual-permuted-10ep-2seeds-centred": 80,
                      "continual-fmnist-20ep-3seeds": 180,
                      "continual-permuted-10ep-3seeds": 50,
                      "continual-permuted-10ep-3seeds-normmax": 75,
                      "continual-fmnist-20ep-5seeds": 270,
                      "continual-20ep-dropout05-3seeds": 95,
                      "continual-fmnist-20ep-5seeds-floor": 525,
                      "continual-20ep-3seeds-floor": 285,
                      "continual-permuted-10ep-3seeds-normmax-floor": 95,
                      "continual-permuted-10ep-5seeds-normmax-floor": 125,
                      "continual-permuted-10ep-headscale": 165,
                      "continual-20ep-3seeds-accsum": 24,
                      "continual-20ep-3seeds-headwarmup": 27,
                      "continual-20ep-3seeds-fisher": 42,
                      "continual-fmnist-20ep-5seeds-fisher": 45,
                      "continual-20ep-3seeds-headwarmup-fisher": 95,
                      "continual-fmnist-20ep-5seeds-headwarmup-fisher": 40,
                      "continual-fmnist-20ep-5seeds-fisher-accmean": 45,
                      "continual-20ep-5seeds-seed5-headwarmup-fisher": 200,
                      "continual-20ep-5seeds-seed10-onese-headwarmup-fisher": 185,
                      "continual-fmnist-20ep-3seeds-seed10-onese-fisher": 130,
                      "continual-cnn-split-mnist-10ep-seed10": 35, "continual-cnn-split-mnist-10ep-seed15": 33,
                      "continual-cnn-split-fmnist-10ep-seed10": 40}


def test_every_committed_study_folder_is_key_checked() -> None:
    assert {p.parent.name for p in _RESULTS.glob("*/runs.jsonl")} == set(_COMMITTED_STUDIES)


@pytest.mark.parametrize("folder, min_runs", sorted(_COMMITTED_STUDIES.items()))
def test_committed_runs_keep_their_keys(folder: str, min_runs: int) -> None:
    """Every run recorded in docs/results reproduces its key under the current code, so copying
    a runs.jsonl into an output folder resumes the study from it (options added since, such
    as dropout, stay out of the key at their neutral value)."""
    from neuron_importance.experiments.continual import RunSpec

    base = _RESULTS / folder
    settings = StudySettings.from_saved(
        json.loads((base / "results.json").read_text())["settings"])
    n = 0
    # side files (runs added beside a study, e.g. another seed or a screened option) must
    # resume under the folder's settings too
    records = [json.loads(line) for path in sorted(base.glob("*.jsonl"))
               for line in path.read_text().splitlines()]
    for r in records:
        if "phase" not in r:  # not a study run (e.g. single_task.jsonl)
            continue
        spec = RunSpec.from_record(r, settings)
        assert spec.key(settings) == r["key"], (r["benchmark"], r["method"], r["order"])
        n += 1
        if n == 1:
            other = 0.25 if settings.dropout == 0.5 else 0.5
            assert spec.key(replace(settings, dropout=other)) != r["key"]
    assert n >= min_runs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["finetune", "joint", "l2", "ewc", "online-ewc", "si",
                                    "mas", "nai", "nai-tc"])
@pytest.mark.parametrize("benchmark", ["split-mnist", "permuted-mnist"])
def test_a_run_on_the_gpu_matches_the_cpu(tmp_path: Path, data_root: Path, benchmark: str,
                                          method: str) -> None:
    """The same spec on CUDA and on the CPU: same key, same batches and initial weights,
    so the accuracy matrices agree up to float reordering (a few test images at most)."""
    from neuron_importance.experiments.continual import FULL_GRIDS

    grid = FULL_GRIDS.get(method, {})
    hp = tuple((k, v[len(v) // 2]) for k, v in grid.items())
    if method == "nai-tc":
        hp = (*hp, ("conductance_target", "centred"))
    recs = {}
    for device in ("cpu", "cuda"):
        settings = tiny_settings(device=device, permuted_tasks=3)
        spec = RunSpec("main", benchmark, method, (2, 0, 1) if benchmark == "permuted-mnist"
                       else (4, 3, 2, 1, 0), hp, 2, "task")
        recs[device] = _execute(spec, settings, str(data_root), str(tmp_path / device),
                                spec.key(settings))
    assert recs["cpu"]["key"] == recs["cuda"]["key"]
    assert recs["cpu"]["device"] == "cpu" and recs["cuda"]["device"].startswith("cuda")
    np.testing.assert_allclose(recs["cuda"]["acc_matrix"], recs["cpu"]["acc_matrix"], atol=3.0)


def test_si_damping_at_its_default_keeps_the_key() -> None:
    """Tuning SI's ξ beside c writes ξ out; at its default 0.1 the run is the one recorded
    without it (same key, so it is reused), at any other value it is a new run."""
    from neuron_importance.continual import make_strategy
    from neuron_importance.experiments.continual import RunSpec

    settings = StudySettings.quick_mode()

    def key(*hp: tuple[str, float]) -> str:
        return RunSpec("tune", "split-mnist", "si", (0, 1, 2, 3, 4), tuple(sorted(hp)), 3,
                       "task").key(settings)

    assert make_strategy("si", {"c": 1.0}).xi == 0.1  # the neutral value is SI's default
    assert key(("c", 1.0), ("xi", 0.1)) == key(("c", 1.0))
    assert key(("c", 1.0), ("xi", 0.01)) != key(("c", 1.0))
    assert key(("c", 1.0), ("xi", 0.01)) != key(("c", 1.0), ("xi", 1.0))


def test_a_reused_run_recorded_before_a_switch_joins_its_grid_point(tmp_path: Path,
                                                                    data_root: Path) -> None:
    """Seed 0 recorded without ``floor`` and seed 1 run with ``floor = 0`` written out are one
    grid point: tuning averages both seeds instead of listing two one-seed points."""
    few = dict(benchmarks=["split-mnist"], methods=["nai"], n_orders=1, ablation=[],
               class_il_methods=[])
    point_grid = {"nai": {"lam": [0.1], "floor": [0.0]}}
    run_study(tmp_path, tiny_settings(**few, grids=point_grid),
              data_dir=data_root, progress=False, log=lambda m: None)
    runs = tmp_path / "runs.jsonl"
    before = [json.loads(line) for line in runs.read_text().splitlines()]
    for r in before:  # as written before the switch existed: same key, no floor named
        del r["hyperparameters"]["floor"]
    runs.write_text("".join(json.dumps(r) + "\n" for r in before))
    res = run_study(tmp_path, tiny_settings(**few, seeds=2, grids=point_grid),
                    data_dir=data_root, progress=False, log=lambda m: None)
    (point,) = res["tuning"]["split-mnist"]["nai"]
    assert point["hyperparameters"] == {"floor": 0.0, "lam": 0.1}
    assert point["seeds"] == [0, 1]
    assert point["val_acc"] == pytest.approx(np.mean(point["val_accs"]))
    assert before[0]["val_acc"] in point["val_accs"]


def test_headline_says_each_goal_met_or_missed_to_three_decimals() -> None:
    """A mean of 99.6953 prints as 99.70 on the two-decimal line; the goal line must still
    say the 99.7 goal is missed and show the figure that misses it."""
    summary = {"split-mnist": {
        "si": {"mean": 99.55, "std": 0.05, "worst": 99.46},
        "nai": {"mean": 99.6953, "std": 0.023, "worst": 99.662}}}
    goals = {"split-mnist": {
        "acc_goal": 99.7, "best_baseline_mean": 99.55, "best_baseline_worst": 99.46,
        "smallest_baseline_std": 0.05,
        "nai_meets_acc_goal": False, "nai_mean_at_or_above_best_baseline": True,
        "nai_worst_at_or_above_best_baseline": True,
        "nai_smallest_std_among_regularisers": True}}
    lines = headline({"summary": summary, "goals": goals})
    assert lines[0].endswith("nai 99.70±0.02 (worst 99.66)")
    assert lines[1] == ("  split-mnist goals of nai: ACC >= 99.7: MISSED (99.695); "
                        "mean >= best baseline's: met (99.695 vs 99.550); "
                        "worst >= best baseline's: met (99.662 vs 99.460); "
                        "std <= the baselines' smallest: met (0.023 vs 0.050)")
    # no NAI variant in the study: no goal line
    assert len(headline({"summary": {"split-mnist": {"si": summary["split-mnist"]["si"]}},
                         "goals": {"split-mnist": {}}})) == 1


def test_cli_conv_trunk_study_is_keyed_apart_and_reported(tmp_path: Path, data_root: Path,
                                                          capsys) -> None:
    """``--conv`` trains a CNN for every method; its runs never reuse the MLP's."""
    out = tmp_path / "out"
    common = ["reproduce", "continual", "--quick", "--quiet", "--out", str(out),
              "--data-dir", str(data_root), "--benchmarks", "split-mnist",
              "--methods", "finetune,nai", "--orders", "2", "--epochs", "1", "--no-class-il",
              "--no-ablation", "--hidden", "8", "--grid", "nai:lam=0.5"]
    assert main(common + ["--conv", "2,3"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["conv"] == [2, 3]
    assert "CNN" in (out / "report.md").read_text()
    cnn_keys = {r["key"] for r in map(json.loads, (out / "runs.jsonl").read_text().splitlines())}
    assert main(common) == 0  # the MLP study in the same folder trains its own runs
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["conv"] == []
    keys = {r["key"] for r in map(json.loads, (out / "runs.jsonl").read_text().splitlines())}
    assert len(keys) == 2 * len(cnn_keys) and cnn_keys < keys
    capsys.readouterr()
    assert main(common + ["--conv", "0"]) == 2
    assert "argument --conv: must be comma-separated positive" in capsys.readouterr().err


def test_tuning_on_several_orders_averages_them_and_reuses_the_runs(tmp_path: Path,
                                                                    data_root: Path) -> None:
    """``tune_orders=2``: every grid point runs on orders 0 and 1 (identity and reverse), the
    frozen point has the best validation ACC averaged over both, and the main phase reuses
    those runs instead of training them again."""
    settings = tiny_settings(benchmarks=["split-mnist"], methods=["ewc"], n_orders=3,
                             ablation_benchmarks=[], class_il_methods=[],
                             grids={"ewc": {"lam": [1.0, 1000.0]}}, max_extensions=0,
                             tune_orders=2)
    res = run_study(tmp_path, settings, data_dir=data_root, progress=False, log=lambda m: None)
    recs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    tune = [r for r in recs if r["phase"] == "tune"]
    orders = res["orders"]["split-mnist"]
    assert orders[1] == orders[0][::-1]
    assert sorted((r["hyperparameters"]["lam"], tuple(r["order"])) for r in tune) == sorted(
        (lam, tuple(o)) for lam in (1.0, 1000.0) for o in orders[:2])
    table = res["tuning"]["split-mnist"]["ewc"]
    for p in table:
        twins = [r for r in tune if r["hyperparameters"]["lam"] == p["hyperparameters"]["lam"]]
        assert p["val_acc"] == pytest.approx(np.mean([r["val_acc"] for r in twins]))
        assert p["test_acc"] == pytest.approx(np.mean([r["acc"] for r in twins]))
        assert sorted(map(tuple, p["orders"])) == sorted(tuple(o) for o in orders[:2])
    best = max(table, key=lambda p: p["val_acc"])["hyperparameters"]
    assert res["chosen_hyperparameters"]["split-mnist"]["ewc"] == best
    # orders 0 and 1 of the main phase are the tuning runs at the chosen point, copied
    main = [r for r in recs if r["phase"] == "main"]
    assert len(main) == 3
    reused = {tuple(r["order"]) for r in main if "reused_from" in r}
    assert reused == {tuple(o) for o in orders[:2]}
    report = (tmp_path / "report.md").read_text()
    assert "tuned on orders 0-1 with the validation split" in report
    assert "Tuning grid (orders 0-1; validation ACC / test ACC)" in report


def test_nai_runs_with_the_uncertainty_factor_record_their_task_uncertainty(
        tmp_path: Path, data_root: Path) -> None:
    """NAI with ``task_weight="uncertainty"`` records each task's u_t, in training order, in
    ``runs.jsonl`` and in results.json's ``runs``; other methods record none."""
    settings = tiny_settings(benchmarks=["split-mnist"], methods=["ewc", "nai"], n_orders=2,
                             ablation_benchmarks=[], class_il_methods=[],
                             grids={"ewc": {"lam": [10.0]}, "nai": {"lam": [1.0]}},
                             max_extensions=0,
                             method_nai_options={"nai": {"task_weight": "uncertainty"}})
    res = run_study(tmp_path, settings, data_dir=data_root, progress=False, log=lambda m: None)
    recs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    for r in recs + res["runs"]:
        if r["method"] == "nai":
            u = r["task_uncertainty"]
            assert len(u) == 5 and all(0 <= v <= 0.25 for v in u)  # p(1 − p) ≤ 1/4
        else:
            assert "task_uncertainty" not in r
    # one record per order of the main phase (identity and reverse)
    by_order = {tuple(r["order"]): r["task_uncertainty"] for r in res["runs"]
                if r["method"] == "nai"}
    assert set(by_order) == {(0, 1, 2, 3, 4), (4, 3, 2, 1, 0)}


@pytest.mark.parametrize("k", [0, 4, 1.5, True])
def test_tune_orders_must_name_some_of_the_study_s_orders(k) -> None:
    with pytest.raises(ValueError, match=f"tune_orders must be an int from 1 to the number "
                                         rf"of orders \(3\), got {k!r}"):
        tiny_settings(n_orders=3, tune_orders=k).check()
