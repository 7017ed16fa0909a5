"""``attribute_dataset`` in one process: numbers against direct calls, resume, refusals, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import neuron_importance as ni
from neuron_importance.batch import StoreError, StoreMismatchError, attribute_dataset
from neuron_importance.batch.hashing import model_hash
from neuron_importance.batch.methods import METHODS, SPECS, shuffled_references
from neuron_importance.batch.runner import run_attribution
from neuron_importance.cli.explain import METHODS as EXPLAIN_METHODS
from neuron_importance.cli.main import main
from neuron_importance.genomics.hypothetical import hypothetical_contributions
from neuron_importance.genomics.onehot import one_hot_encode
from neuron_importance.models import build_model, load_model, save_weights

N, BATCH, CHUNK = 50, 8, 16  # chunks of 16, 16, 16 and 2 examples


@pytest.fixture
def mlp(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    weights = save_weights(build_model("mlp:4-8-3"), tmp_path / "mlp.safetensors")
    x = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    refs = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    np.save(tmp_path / "refs.npy", refs)
    return {"weights": weights, "data": tmp_path / "x.npy", "x": torch.from_numpy(x),
            "refs": torch.from_numpy(refs), "model": load_model("mlp:4-8-3", weights)}


def _run(mlp: dict, out: Path, method: str = "deeplift", **kw):
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("chunk_size", CHUNK)
    return run_attribution("mlp:4-8-3", mlp["data"], method, out, weights=mlp["weights"],
                           progress=False, **kw)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# Every method with the options it is run with here, and the same call made directly.
CASES = {
    "saliency": ({}, lambda m, xb, t, r: (ni.Saliency(m).attribute(xb, target=t), None)),
    "input_x_gradient": ({}, lambda m, xb, t, r: (ni.InputXGradient(m).attribute(xb, target=t),
                                                  None)),
    "guided_backprop": ({}, lambda m, xb, t, r: (ni.GuidedBackprop(m).attribute(xb, target=t),
                                                 None)),
    "integrated_gradients": (
        {"options": {"n_steps": 8}},
        lambda m, xb, t, r: ni.IntegratedGradients(m).attribute(
            xb, target=t, n_steps=8, return_convergence_delta=True)),
    "deeplift": ({"options": {"rule": "reveal_cancel"}},
                 lambda m, xb, t, r: ni.DeepLift(m, rule="reveal_cancel").attribute(
                     xb, target=t, return_convergence_delta=True)),
    "deeplift_shap": ({"baseline": "REFS"},
                      lambda m, xb, t, r: ni.DeepLiftShap(m).attribute(
                          xb, baselines=r, target=t, return_convergence_delta=True)),
    "total_conductance": ({"layer": "2", "options": {"n_steps": 6}},
                          lambda m, xb, t, r: ni.TotalConductance(m, "2").attribute(
                              xb, target=t, n_steps=6, return_convergence_delta=True)),
    "neuron_conductance": ({"layer": "2", "neuron": [1, 3], "options": {"n_steps": 6}},
                           lambda m, xb, t, r: (ni.NeuronConductance(m, "2").attribute(
                               xb, [1, 3], target=t, n_steps=6).transpose(0, 1), None)),
    "layer_deeplift": ({"layer": "2"}, lambda m, xb, t, r: ni.LayerDeepLift(m, "2").attribute(
        xb, target=t, return_convergence_delta=True)),
    "layer_activation": ({"layer": "2"},
                         lambda m, xb, t, r: (ni.LayerActivation(m, "2").attribute(xb), None)),
}


def test_every_library_method_is_offered() -> None:
    assert set(EXPLAIN_METHODS) <= set(METHODS)
    assert set(CASES) == set(METHODS)
    assert all(name in ni.__all__ for name in ("TotalConductance", "NeuronConductance",
                                                "LayerDeepLift", "LayerActivation"))


@pytest.mark.parametrize("method", METHODS)
def test_store_equals_direct_calls_batch_by_batch(method: str, mlp: dict, tmp_path: Path) -> None:
    kw, direct = CASES[method]
    kw = dict(kw)
    if kw.get("baseline") == "REFS":
        kw["baseline"] = str(tmp_path / "refs.npy")
    store = _run(mlp, tmp_path / "store", method, **kw).store
    model, x = mlp["model"], mlp["x"]
    for s in range(0, N, BATCH):
        xb = x[s : s + BATCH]
        out = model(xb).detach()
        t = out.argmax(dim=1)
        attr, delta = direct(model, xb, t, mlp["refs"])
        np.testing.assert_array_equal(store["attributions"][s : s + BATCH], attr.detach().numpy())
        np.testing.assert_array_equal(store["predictions"][s : s + BATCH], out.numpy())
        if SPECS[method].has_target:
            np.testing.assert_array_equal(store["targets"][s : s + BATCH], t.numpy())
        else:
            assert "targets" not in store
        if delta is None:
            assert "delta" not in store
        else:
            np.testing.assert_array_equal(store["delta"][s : s + BATCH], delta.numpy())


def test_completeness_error_is_the_residual_of_summation_to_delta(mlp, tmp_path) -> None:
    """The stored delta, from an independent forward pass: Σ attributions − (f(x) − f(0))."""
    store = _run(mlp, tmp_path / "s", "deeplift").store
    out_x = mlp["model"](mlp["x"]).detach().numpy()
    out_0 = mlp["model"](torch.zeros(1, 4)).detach().numpy()[0]
    t = store["targets"][:]
    change = out_x[np.arange(N), t] - out_0[t]
    residual = store["attributions"][:].sum(axis=1) - change
    np.testing.assert_allclose(store["delta"][:], residual, atol=2e-6)
    assert np.abs(store["delta"][:]).max() < 1e-5


def test_manifest_traces_the_result_back(mlp, tmp_path) -> None:
    r = _run(mlp, tmp_path / "s", "integrated_gradients", options={"n_steps": 8}, target=1)
    m = r.store.attrs["neuron_importance"]
    assert m["method"] == "integrated_gradients"
    assert m["options"] == {"multiply_by_inputs": True, "n_steps": 8, "internal_batch_size": None,
                            "method": "gausslegendre"}
    assert m["target"] == {"mode": "index", "index": 1, "hash": None}
    assert m["model"]["hash"] == model_hash(mlp["model"])
    assert m["data"]["hash"] == "sha256:" + hashlib.sha256(mlp["data"].read_bytes()).hexdigest()
    assert m["library_version"] == ni.__version__
    assert (m["batch_size"], m["chunk_size"], m["n_chunks"]) == (BATCH, CHUNK, 4)
    assert m["arrays"]["attributions"] == {"shape": [N, 4], "dtype": "float32"}
    assert r.store["attributions"].chunks == (CHUNK, 4)
    assert sorted(p.name for p in (tmp_path / "s" / "done").glob("0*.json")) == [
        f"{i:08d}.json" for i in range(4)]


def test_resume_recomputes_exactly_the_corrupt_or_missing_chunks(mlp, tmp_path) -> None:
    reference = tmp_path / "ref"
    _run(mlp, reference)
    store = tmp_path / "s"
    _run(mlp, store)
    chunk0 = store / "attributions" / "c" / "0" / "0"
    stamp = chunk0.stat().st_mtime_ns, (store / "done" / "00000000.json").stat().st_mtime_ns
    # chunk 1: truncated attribution file; chunk 2: garbled marker; chunk 3: delta file lost
    c1 = store / "attributions" / "c" / "1" / "0"
    c1.write_bytes(c1.read_bytes()[: len(c1.read_bytes()) // 2])
    (store / "done" / "00000002.json").write_text("{not json")
    (store / "delta" / "c" / "3").unlink()
    # leftovers of a write killed half-way are cleaned up
    (store / "attributions" / "c" / "2" / "0.deadbeef.partial").write_bytes(b"junk")

    again = _run(mlp, store)
    assert again.computed_examples == 16 + 16 + 2  # chunks 1, 2, 3; chunk 0 was kept
    assert (chunk0.stat().st_mtime_ns,
            (store / "done" / "00000000.json").stat().st_mtime_ns) == stamp
    assert _files(store) == _files(reference)
    assert _run(mlp, store).computed_examples == 0  # complete: nothing left to do


def test_different_options_are_refused_and_leave_the_store_intact(mlp, tmp_path) -> None:
    out = tmp_path / "s"
    _run(mlp, out)
    before = _files(out)
    with pytest.raises(StoreMismatchError) as info:
        _run(mlp, out, options={"rule": "reveal_cancel"})
    msg = str(info.value)
    assert "options.rule: 'rescale' in the store, 'reveal_cancel' now" in msg
    assert "--overwrite" in msg
    with pytest.raises(StoreMismatchError, match="method: 'deeplift' in the store"):
        _run(mlp, out, method="saliency")
    with pytest.raises(StoreMismatchError, match="batch_size: 8 in the store, 4 now"):
        _run(mlp, out, batch_size=4)
    assert _files(out) == before
    r = _run(mlp, out, options={"rule": "reveal_cancel"}, overwrite=True)
    assert r.computed_examples == N
    assert r.store.attrs["neuron_importance"]["options"]["rule"] == "reveal_cancel"


def test_store_of_another_model_or_other_data_is_refused(mlp, tmp_path) -> None:
    out = tmp_path / "s"
    _run(mlp, out)
    torch.manual_seed(1)
    other = save_weights(build_model("mlp:4-8-3"), tmp_path / "other.safetensors")
    with pytest.raises(StoreMismatchError, match=r"holds attributions of another model"):
        run_attribution("mlp:4-8-3", mlp["data"], "deeplift", out, weights=other,
                        batch_size=BATCH, chunk_size=CHUNK, progress=False)
    np.save(tmp_path / "y.npy", np.ones((N, 4), np.float32))
    with pytest.raises(StoreMismatchError, match=r"holds attributions of other data"):
        run_attribution("mlp:4-8-3", tmp_path / "y.npy", "deeplift", out,
                        weights=mlp["weights"], batch_size=BATCH, chunk_size=CHUNK,
                        progress=False)


def test_errors_come_before_anything_is_written(mlp, tmp_path) -> None:
    out = tmp_path / "new" / "store"
    with pytest.raises(ValueError, match=r"target 7 is out of range: the model returns 3 "):
        _run(mlp, out, target=7)
    with pytest.raises(ValueError, match=r"the model rejected inputs of shape \(1, 4\)"):
        run_attribution("mlp:5-8-3", mlp["data"], "saliency", out, progress=False)
    bad = np.zeros(N, np.int64)
    bad[13] = 3
    np.save(tmp_path / "t.npy", bad)
    with pytest.raises(ValueError, match=r"t.npy: example 13 has target 3, out of range"):
        _run(mlp, out, target=str(tmp_path / "t.npy"))
    with pytest.raises(ValueError, match=r"saliency has no option 'rule' \(its options: abs\)"):
        _run(mlp, out, "saliency", options={"rule": "rescale"})
    with pytest.raises(ValueError, match=r"chunk size 12 must be a positive multiple"):
        _run(mlp, out, chunk_size=12)
    assert not (tmp_path / "new").exists()
    # an output under a regular file cannot be created
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"cannot write the store to .*file/store"):
        _run(mlp, tmp_path / "file" / "store")
    # a folder with other things in it is neither written into nor deleted
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="is not empty and is not a result store"):
            _run(mlp, tmp_path / "busy", overwrite=overwrite)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_per_example_targets_from_a_file(mlp, tmp_path) -> None:
    t = np.arange(N, dtype=np.int64) % 3
    np.save(tmp_path / "t.npy", t)
    store = _run(mlp, tmp_path / "s", "input_x_gradient", target=str(tmp_path / "t.npy")).store
    np.testing.assert_array_equal(store["targets"][:], t)
    direct = ni.InputXGradient(mlp["model"]).attribute(mlp["x"][:8], target=torch.from_numpy(t[:8]))
    np.testing.assert_array_equal(store["attributions"][:8], direct.numpy())


@pytest.fixture
def dna(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    weights = save_weights(build_model("genomics_cnn"), tmp_path / "g.safetensors")
    rng = np.random.default_rng(5)
    seqs = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(12)]
    seqs[2] = seqs[2][:7] + "NNN" + seqs[2][10:]
    path = tmp_path / "s.fa"
    path.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    return {"weights": weights, "data": path, "x": one_hot_encode(seqs),
            "model": load_model("genomics_cnn", weights)}


def test_dna_deeplift_stores_hypothetical_contributions(dna, tmp_path) -> None:
    store = run_attribution("genomics_cnn", dna["data"], "deeplift", tmp_path / "s",
                            weights=dna["weights"], target=0, batch_size=4,
                            progress=False).store
    x, model = dna["x"], dna["model"]
    dl = ni.DeepLift(model)
    for s in range(0, 12, 4):
        xb = x[s : s + 4]
        np.testing.assert_array_equal(store["attributions"][s : s + 4],
                                      dl.attribute(xb, target=0).numpy())
        hyp = hypothetical_contributions(dl.multipliers(xb, target=0), torch.zeros_like(xb))
        np.testing.assert_array_equal(store["hypothetical"][s : s + 4], hyp.numpy())
    # projected onto the observed bases, hypothetical = actual contributions (zero reference)
    np.testing.assert_allclose((store["hypothetical"][:] * x.numpy()).sum(axis=1),
                               store["attributions"][:].sum(axis=1), atol=1e-6)


def test_dna_deeplift_shap_with_shuffled_references(dna, tmp_path) -> None:
    store = run_attribution("genomics_cnn", dna["data"], "deeplift_shap", tmp_path / "s",
                            weights=dna["weights"], target=1, baseline="shuffle:3", seed=5,
                            batch_size=4, progress=False).store
    refs = shuffled_references(dna["x"], 3, start=0, seed=5)
    direct, delta = ni.DeepLiftShap(dna["model"]).attribute(
        dna["x"], baselines=refs, target=1, return_convergence_delta=True)
    np.testing.assert_allclose(store["attributions"][:], direct.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(store["delta"][:], delta.numpy(), atol=1e-6)
    assert store["hypothetical"].shape == (12, 4, 30)
    assert store.attrs["neuron_importance"]["seed"] == 5


def test_dataset_api_returns_the_store(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp:3-5-2")
    x = torch.randn(20, 3)
    ds = torch.utils.data.TensorDataset(x, torch.zeros(20))
    store = attribute_dataset(model, ds, "saliency", tmp_path / "s", target=1, batch_size=5,
                              progress=False, data_hash="my-dataset-v1")
    np.testing.assert_array_equal(store["attributions"][:],
                                  ni.Saliency(model).attribute(x, target=1).numpy())
    assert store.attrs["neuron_importance"]["data"]["hash"] == "my-dataset-v1"


def test_cli_attribute_summary_and_one_line_errors(mlp, tmp_path, capsys) -> None:
    out = tmp_path / "s"
    args = ["attribute", "--quiet", "--model", "mlp:4-8-3", "--weights", str(mlp["weights"]),
            "--data", str(mlp["data"]), "--out", str(out), "--batch-size", "8"]
    assert main([*args, "--method", "ig", "--n-steps", "8", "--integration",
                 "riemann_trapezoid"]) == 0
    text = capsys.readouterr().out
    assert f"integrated_gradients: {N} example(s)" in text and "examples/s" in text
    opts = json.loads((out / "zarr.json").read_text())["attributes"]["neuron_importance"]["options"]
    assert (opts["n_steps"], opts["method"]) == (8, "riemann_trapezoid")
    assert main([*args, "--method", "ig"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "options.n_steps: 8 in the store, 50 now" in lines[0]
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGU\n")
    assert main(["attribute", "--model", "genomics_cnn", "--data", str(bad), "--method", "dl",
                 "--out", str(tmp_path / "b")]) == 2
    assert "record 'x', line 2, column 4: invalid character 'U'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "b")
