"""``neuron-importance attribute`` as real processes: torchrun with 2 gloo ranks, and SIGKILL.

Both compare whole stores byte for byte (every chunk file, marker and the metadata) and the
decoded arrays, against a run of the same command in one uninterrupted process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from neuron_importance.models import build_model, save_weights

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and gloo")


@pytest.fixture
def dna(tmp_path: Path) -> dict:
    torch.manual_seed(0)
    weights = save_weights(build_model("genomics_cnn"), tmp_path / "g.safetensors")
    rng = np.random.default_rng(11)
    path = tmp_path / "seqs.fa"
    path.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGTN'), 30))}\n"
                            for i in range(240)))
    return {"weights": str(weights), "data": str(path)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # what torchrun sets; the same for the 1-process runs
    env.pop("NEURON_IMPORTANCE_DEBUG", None)
    return env


def _command(dna: dict, out: Path, *extra: str) -> list[str]:
    return ["attribute", "--quiet", "--model", "genomics_cnn", "--weights", dna["weights"],
            "--data", dna["data"], "--target", "0", "--out", str(out), *extra]


def _single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuron_importance", *args], env=_env(),
                          capture_output=True, text=True, timeout=120)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _chunk_files(store: Path, i: int) -> list[Path]:
    """Chunk ``i``'s marker and its file in every array."""
    paths = [store / "done" / f"{i:08d}.json"]
    for array in sorted(p for p in store.iterdir() if (p / "c").is_dir()):
        c = array / "c" / str(i)
        paths += [c] if c.is_file() else sorted(p for p in c.rglob("*") if p.is_file())
    return paths


def _assert_same_store(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differing = [k for k in fa if fa[k] != fb[k]]
    assert not differing, f"files differ: {differing[:5]}"
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    assert sorted(ga.array_keys()) == sorted(gb.array_keys())
    for name in ga.array_keys():
        assert np.array_equal(ga[name][:], gb[name][:], equal_nan=True), name


def test_two_gloo_processes_write_the_bytes_of_one_process(dna, tmp_path: Path) -> None:
    # deeplift_shap on shuffled references: the references of every example must not depend
    # on which rank drew them
    extra = ("--method", "deeplift_shap", "--baseline", "shuffle:2", "--seed", "3",
             "--batch-size", "8", "--chunk-size", "16", "--limit", "120")
    one = _single(_command(dna, tmp_path / "one", *extra))
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "neuron_importance", *_command(dna, tmp_path / "two", *extra)],
        env=_env(), capture_output=True, text=True, timeout=180,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 processes" in two.stdout and two.stdout.count("deeplift_shap:") == 1
    _assert_same_store(tmp_path / "one", tmp_path / "two")
    store = zarr.open_group(tmp_path / "two", mode="r")
    assert store["attributions"].shape == (120, 4, 30)
    assert np.isfinite(store["attributions"][:]).all()  # every chunk was written by some rank


def test_sigkill_then_resume_equals_an_uninterrupted_run(dna, tmp_path: Path) -> None:
    extra = ("--method", "integrated_gradients", "--n-steps", "96", "--batch-size", "8",
             "--chunk-size", "8", "--threads", "1")
    reference = _single(_command(dna, tmp_path / "ref", *extra))
    assert reference.returncode == 0, reference.stderr
    n_chunks = 30

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "neuron_importance",
                             *_command(dna, out, *extra)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    try:
        while not list((out / "done").glob("0*.json")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk finished in time"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    markers = sorted((out / "done").glob("0*.json"))
    assert 1 <= len(markers) < n_chunks, "kill it mid-way"
    stamps = {p: p.stat().st_mtime_ns for m in markers for p in _chunk_files(out, int(m.stem))}
    assert len(stamps) == 5 * len(markers)  # marker + attributions, delta, predictions, targets

    resumed = _single(_command(dna, out, *extra))
    assert resumed.returncode == 0, resumed.stderr
    assert "already in the store" in resumed.stdout
    _assert_same_store(tmp_path / "ref", out)
    # finished chunks were verified, not recomputed: their files were not touched
    changed = [str(p) for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert not changed
