"""End-to-end tests of the ``neuron-importance`` command (run in-process through ``main``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_importance.cli.main import main
from neuron_importance.models import (
    build_model,
    cache_path,
    cached_model,
    load_model,
    save_weights,
)

# The tests build TorchScript files on purpose; torch >= 2.10 deprecates torch.jit.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# DeepLIFT-family and guided backprop are written in parallel; skip only while they are absent.
needs_deeplift = pytest.mark.skipif(
    not (_have("neuron_importance.attribution.deeplift")
         and _have("neuron_importance.attribution.deeplift_shap")),
    reason="DeepLift/DeepLiftShap not written yet",
)
needs_gbp = pytest.mark.skipif(
    not _have("neuron_importance.attribution.guided_backprop"),
    reason="GuidedBackprop not written yet",
)

METHODS = [
    pytest.param("saliency"),
    pytest.param("input_x_gradient"),
    pytest.param("guided_backprop", marks=needs_gbp),
    pytest.param("integrated_gradients"),
    pytest.param("deeplift", marks=needs_deeplift),
    pytest.param("deeplift_shap", marks=needs_deeplift),
]


@pytest.fixture
def mlp_files(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    weights = save_weights(build_model("mlp:4-8-3"), tmp_path / "mlp.safetensors")
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).random((6, 4), dtype=np.float32))
    return weights, inputs


def _explain(*args: str) -> int:
    return main(["explain", "--quiet", *args])


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- explain


@pytest.mark.parametrize("method", METHODS)
def test_explain_mlp_npy(method: str, mlp_files, tmp_path: Path) -> None:
    weights, inputs = mlp_files
    out = tmp_path / "out"
    extra = ["--baseline", str(inputs)] if method == "deeplift_shap" else []
    rc = _explain(
        "--model", "mlp:4-8-3", "--weights", str(weights), "--inputs", str(inputs),
        "--method", method, "--out", str(out), "--batch-size", "4", *extra,
    )  # fmt: skip
    assert rc == 0
    attr = np.load(out / "attributions.npy")
    assert attr.shape == (6, 4) and attr.dtype == np.float32 and np.isfinite(attr).all()
    targets = np.load(out / "targets.npy")
    model = load_model("mlp:4-8-3", weights)
    with torch.no_grad():
        pred = model(torch.from_numpy(np.load(inputs))).argmax(1).numpy()
    np.testing.assert_array_equal(targets, pred)  # --target defaults to the prediction
    assert (out / "features.png").stat().st_size > 0
    has_delta = method in ("integrated_gradients", "deeplift", "deeplift_shap")
    assert (out / "delta.npy").exists() == has_delta
    if has_delta:
        assert np.abs(np.load(out / "delta.npy")).max() < 1e-2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["n_examples"] == 6


def test_explain_matches_python_api(mlp_files, tmp_path: Path) -> None:
    from neuron_importance import IntegratedGradients

    weights, inputs = mlp_files
    out = tmp_path / "ig"
    rc = _explain(
        "--model", "mlp:4-8-3", "--weights", str(weights), "--inputs", str(inputs),
        "--method", "ig", "--target", "2", "--n-steps", "16", "--batch-size", "4",
        "--out", str(out),
    )  # fmt: skip
    assert rc == 0
    model = load_model("mlp:4-8-3", weights)
    expected = IntegratedGradients(model).attribute(
        torch.from_numpy(np.load(inputs)), target=2, n_steps=16
    )
    np.testing.assert_allclose(np.load(out / "attributions.npy"), expected.numpy(), atol=1e-6)
    assert (np.load(out / "targets.npy") == 2).all()


def test_explain_npz_first_array_and_key(mlp_files, tmp_path: Path) -> None:
    weights, _ = mlp_files
    npz = tmp_path / "x.npz"
    np.savez(npz, a=np.ones((3, 4)), b=np.zeros((5, 4)))
    common = ["--model", "mlp:4-8-3", "--weights", str(weights), "--inputs", str(npz)]
    assert _explain(*common, "--method", "saliency", "--out", str(tmp_path / "a")) == 0
    assert np.load(tmp_path / "a" / "attributions.npy").shape == (3, 4)
    assert _explain(
        *common, "--key", "b", "--method", "input_x_gradient", "--limit", "2",
        "--out", str(tmp_path / "b"),
    ) == 0  # fmt: skip
    assert np.load(tmp_path / "b" / "attributions.npy").shape == (2, 4)


def _write_fasta(path: Path, n: int = 3, length: int = 40, bad: bool = False) -> Path:
    rng = np.random.default_rng(1)
    lines = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), length))
        if bad and i == 1:
            seq = seq[:5] + "X" + seq[6:]
        lines += [f">seq{i}", seq[: length // 2], seq[length // 2 :]]
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_deeplift
@pytest.mark.parametrize(
    "method, extra",
    [
        ("deeplift", ["--rule", "genomics_default", "--baseline", "background"]),
        ("deeplift_shap", ["--rule", "genomics_default", "--baseline", "shuffle:3"]),
    ],
)
def test_explain_fasta_writes_logos(method: str, extra: list[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_weights(build_model("genomics_cnn"), tmp_path / "g.safetensors")
    fasta = _write_fasta(tmp_path / "seqs.fa")
    out = tmp_path / "out"
    rc = _explain(
        "--model", "genomics_cnn", "--weights", str(weights), "--inputs", str(fasta),
        "--method", method, "--target", "1", "--max-plots", "2", "--out", str(out), *extra,
    )  # fmt: skip
    assert rc == 0
    attr = np.load(out / "attributions.npy")
    assert attr.shape == (3, 4, 40)
    assert (out / "logo_000.png").stat().st_size > 0 and (out / "logo_001.png").exists()
    assert not (out / "logo_002.png").exists()
    assert np.abs(np.load(out / "delta.npy")).max() < 1e-4


def test_explain_image_folder_and_torchscript(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    model = build_model("digits_cnn").eval()
    scripted = tmp_path / "digits.ts"
    torch.jit.save(torch.jit.script(model), str(scripted))
    out = tmp_path / "out"
    rc = _explain("--model", str(scripted), "--inputs", str(folder), "--method", "saliency",
                  "--out", str(out))
    assert rc == 0
    assert np.load(out / "attributions.npy").shape == (3, 1, 8, 8)
    assert (out / "attributions.png").stat().st_size > 0


@needs_deeplift
def test_explain_refuses_deeplift_on_torchscript(tmp_path: Path, capsys) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), dtype=np.float32))
    scripted = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(build_model("mlp:4-3").eval()), str(scripted))
    rc = _explain("--model", str(scripted), "--inputs", str(x), "--method", "deeplift",
                  "--out", str(tmp_path / "o"))
    assert rc == 2
    assert "Python model" in _error_line(capsys)


# ----------------------------------------------------------------------------- errors


def test_explain_errors(mlp_files, tmp_path: Path, capsys) -> None:
    weights, inputs = mlp_files
    base = ["--model", "mlp:4-8-3", "--weights", str(weights), "--out", str(tmp_path / "o")]

    def check(args: list[str], *needles: str) -> None:
        assert _explain(*args) == 2, args
        line = _error_line(capsys)
        for needle in needles:
            assert needle in line, line

    check([*base, "--inputs", str(tmp_path / "nope.npy"), "--method", "saliency"],
          "not found", "nope.npy")
    check([*base, "--inputs", str(inputs), "--method", "salency"],
          "unknown method", "did you mean 'saliency'")
    bad_fasta = _write_fasta(tmp_path / "bad.fa", bad=True)
    check(["--model", "genomics_cnn", "--inputs", str(bad_fasta), "--method", "saliency",
           "--out", str(tmp_path / "o")], "'X'", "seq1", "position 5")
    check(["--model", "mlp:5-8-3", "--weights", str(weights), "--inputs", str(inputs),
           "--method", "saliency"], "'1.weight'", "(8, 4)", "(8, 5)")
    check(["--model", "mlp:4-8-3", "--weights", str(tmp_path / "missing.safetensors"),
           "--inputs", str(inputs), "--method", "saliency"], "weights file not found")
    check(["--model", "genomics_cnn", "--inputs", str(inputs), "--method", "saliency",
           "--out", str(tmp_path / "o")], "model/input mismatch", "(1, 4)")
    check([*base, "--inputs", str(inputs), "--method", "saliency", "--target", "7"],
          "out of range")
    check([*base, "--inputs", str(inputs), "--method", "saliency", "--baseline", "zeros"],
          "--baseline does not apply")
    check(["--model", "resnet9000", "--inputs", str(inputs), "--method", "saliency"],
          "unknown model", "mnist_cnn", "mlp:")
    check([*base, "--inputs", str(inputs), "--method", "integrated_gradients",
           "--baseline", "shuffle:3"], "DNA")


def test_main_usage_errors(capsys) -> None:
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert main(["explain", "--model", "mlp:2-2"]) == 2  # missing required options
    assert "required" in capsys.readouterr().err


# ----------------------------------------------------------------------------- models


def test_build_model_specs() -> None:
    assert build_model("mnist_cnn")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("digits_cnn")(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert build_model("genomics_cnn")(torch.zeros(2, 4, 50)).shape == (2, 3)
    mlp = build_model("mlp:4-16-8-3")
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [16, 8, 3]
    for bad in ("mlp:4", "mlp:4-x-3", "mlp:4-0-3"):
        with pytest.raises(ValueError, match="mlp"):
            build_model(bad)
    with pytest.raises(ValueError, match="known models: mnist_cnn"):
        build_model("vgg16")


def test_load_model_state_dict_formats(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp:4-8-3")
    x = torch.rand(5, 4)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    save_weights(model, tmp_path / "w.safetensors")
    for name in ("w.pt", "ckpt.pth", "w.safetensors"):
        loaded = load_model("mlp:4-8-3", tmp_path / name)
        assert not loaded.training
        torch.testing.assert_close(loaded(x), model(x))


def test_load_model_refuses_pickled_objects(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(build_model("mlp:4-8-3"), whole)  # a pickled nn.Module, not a state dict
    with pytest.raises(ValueError, match="pickled"):
        load_model("mlp:4-8-3", whole)
    other = tmp_path / "other.pt"
    torch.save({"lr": 0.1, "name": "x"}, other)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_model("mlp:4-8-3", other)
    with pytest.raises(ValueError, match="missing"):
        torch.save({"0.weight": torch.zeros(8, 4)}, tmp_path / "partial.pt")
        load_model("mlp:4-8-3", tmp_path / "partial.pt")


def test_load_model_from_saved_programs(tmp_path: Path) -> None:
    model = build_model("mlp:4-8-3").eval()
    x = torch.rand(3, 4)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.ts"))
    torch.testing.assert_close(load_model(str(tmp_path / "m.ts"))(x), model(x))
    ep = torch.export.export(model, (x,))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    torch.testing.assert_close(load_model(str(tmp_path / "m.pt2"))(x), model(x))
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "absent.pt2"))


# ----------------------------------------------------------------------------- cache


def test_cached_model_reuses_and_repairs_cache(tmp_path: Path) -> None:
    calls = []
    x = torch.rand(16, 4)
    y = torch.randint(0, 3, (16,))

    def train(model):
        from neuron_importance.models import train_classifier

        calls.append(1)
        return train_classifier(model, x, y, epochs=2, batch_size=8, lr=1e-2, seed=0,
                                progress=False)

    config = {"epochs": 2, "seed": 0}
    first = cached_model("mlp:4-8-3", config, train, tmp_path)
    second = cached_model("mlp:4-8-3", config, train, tmp_path)
    assert len(calls) == 1
    torch.testing.assert_close(first(x), second(x))
    path = cache_path("mlp:4-8-3", config, tmp_path)
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind

    path.write_bytes(b"\x00garbage, as if the writer had been killed")
    third = cached_model("mlp:4-8-3", config, train, tmp_path)
    assert len(calls) == 2
    torch.testing.assert_close(third(x), first(x))  # same seed, same weights
    assert load_model("mlp:4-8-3", path) is not None

    cached_model("mlp:4-8-3", {"epochs": 3, "seed": 0}, train, tmp_path)  # new key: retrain
    assert len(calls) == 3


# ----------------------------------------------------------------------------- demo


@needs_deeplift
@needs_gbp
def test_demo_quick_digits_fallback(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--quiet", "--data-dir", str(empty), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    report = (out / "report.html").read_text()
    assert "digits" in report and "Test accuracy" in report and "data:image/png" in report
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "digits" and results["model"] == "digits_cnn"
    assert results["test_accuracy"] > 0.5
    assert len(results["methods"]) == 7
    exact = [r for r in results["methods"] if r["method"].startswith("DeepLIFT")]
    assert all(r["max |completeness error|"] < 1e-4 for r in exact)
    assert "MNIST not found" in capsys.readouterr().err
    # second run: weights come from the cache
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["from_cache"] is True
