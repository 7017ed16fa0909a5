"""The result store: a Zarr v3 group of chunked, compressed arrays, a manifest and chunk markers.

Layout of ``OUT/``::

    zarr.json                 group metadata; attribute "neuron_importance" = the manifest
    attributions/             (N, *attribution_shape) float32
    delta/                    (N,) float32   completeness error (methods that have one)
    predictions/              (N, *output_shape) float32   the model's output
    targets/                  (N,) int64     the output index explained (methods with a target)
    hypothetical/             (N, 4, L) float32   DNA with deeplift/deeplift_shap
    done/00000012.json        marker of finished chunk 12: its range and the sha256 of each
                              array's data in it

Every array is chunked along the examples with the same ``chunk_size`` (a multiple of the
batch size), so a *work chunk* ``i`` (examples ``[i·chunk_size, (i+1)·chunk_size)``) is exactly
one Zarr chunk of each array: a writer never touches another writer's chunk files, and
chunk ``i``'s bytes depend only on the examples in it. Chunks are compressed with Zstandard
(level 3); empty chunks are written too, so every finished chunk has its files.

**Crash safety.** A chunk is written array by array, then its marker is written to a temporary
file and renamed into place (atomic on POSIX). A process killed at any point (SIGKILL
included) leaves either a chunk with a valid marker or a chunk without one; on resume, a chunk
counts as finished only if its marker parses and the sha256 of the data read back matches the
marker, so a truncated or corrupt chunk file (or marker) is recomputed. Nothing is fsync'ed:
data written before a process dies is in the OS page cache and survives it; after a power
loss the verification on resume catches what did not reach the disk.

**Manifest.** The method, all its options, the references, the targets, the seed, the model
hash, the data hash, the shapes, the chunking and the library version. Reopening a store
compares everything but the ``provenance`` entry (file paths, torch version): a run with a
different method, options, model or data is refused unless ``overwrite`` is set, and a
folder that is not a result store is never deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .hashing import array_hash

__all__ = [
    "FORMAT",
    "MANIFEST_ATTR",
    "ResultStore",
    "StoreError",
    "StoreMismatchError",
    "check_writable",
    "prepare_store",
    "read_manifest",
]

FORMAT = "neuron-importance-attributions/1"
MANIFEST_ATTR = "neuron_importance"
DONE_DIR = "done"
#: manifest entries that may differ between runs writing the same store
PROVENANCE = "provenance"


class StoreError(ValueError):
    """The output store cannot be used (unwritable, not a result store, corrupt metadata)."""


class StoreMismatchError(StoreError):
    """The output store was written by a run with other settings, model or data."""


def _compressors() -> Any:
    import zarr

    return zarr.codecs.ZstdCodec(level=3)


def check_writable(out: str | os.PathLike) -> None:
    """Fail unless ``out`` is (or can be made) a writable folder; create nothing.

    A probe file is created and removed in ``out`` or its nearest existing ancestor (which
    checks what permissions cannot: read-only mounts, ACLs, root).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"cannot write the store to {out}: it exists and is not a folder")
    probe_dir = out
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise StoreError(f"cannot write the store to {out}: {probe_dir} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ni-write-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise StoreError(
            f"cannot write the store to {out}: {probe_dir} is not writable ({err.strerror})"
        ) from None


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the store at ``out``; ``None`` if ``out`` holds no Zarr group at all.

    Raises :class:`StoreError` for a Zarr group that is not a result store.
    """
    meta = Path(out) / "zarr.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoreError(f"{out} has an unreadable zarr.json ({err}); choose another --out") from None
    manifest = doc.get("attributes", {}).get(MANIFEST_ATTR) if isinstance(doc, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(
            f"{out} holds a Zarr store that was not written by neuron-importance attribute; "
            "refusing to write into (or delete) it: choose another --out"
        )
    return manifest


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for k in list(old) + [k for k in new if k not in old]:
            if not prefix and k == PROVENANCE:
                continue
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def mismatch_message(out: Path, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why the store at ``out`` (manifest ``old``) cannot take this run (``new``); None if it can."""
    diffs = _differences(old, new)
    if not diffs:
        return None
    hint = "pass --overwrite (overwrite=True) to replace it, or choose another --out"
    fields = {d[0] for d in diffs}
    if "model.hash" in fields:
        return (
            f"{out} holds attributions of another model (model hash {old['model']['hash'][:19]}"
            f"..., this run's model {new['model']['hash'][:19]}...); {hint}"
        )
    if "data.hash" in fields:
        return (
            f"{out} holds attributions of other data (data hash {old['data']['hash'][:26]}..., "
            f"this run's data {new['data']['hash'][:26]}...); {hint}"
        )
    listed = "; ".join(f"{k}: {_short(a)} in the store, {_short(b)} now" for k, a, b in diffs[:4])
    more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
    return f"{out} was written with different settings ({listed}{more}); {hint}"


def prepare_store(
    out: str | os.PathLike,
    manifest: dict[str, Any],
    arrays: Mapping[str, tuple[tuple[int, ...], str]],
    overwrite: bool = False,
) -> str:
    """Create the store, or check that an existing one matches; return "created" or "resume".

    ``arrays`` maps each array name to ``(shape, dtype)``. An existing store whose manifest
    differs raises :class:`StoreMismatchError` (unless ``overwrite``: it is then deleted and
    recreated). The store is built in a temporary sibling folder and renamed into place, so a
    kill during creation never leaves a half-made store at ``out``.
    """
    import zarr

    out = Path(out)
    check_writable(out)
    old = read_manifest(out)
    if old is not None:
        why = mismatch_message(out, old, manifest)
        if why is None:
            _remove_leftovers(out)
            return "resume"
        if not overwrite:
            raise StoreMismatchError(why)
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise StoreError(
            f"{out} exists, is not empty and is not a result store; choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.creating-", dir=out.parent))
    try:
        group = zarr.open_group(tmp, mode="w", attributes={MANIFEST_ATTR: manifest})
        chunk = int(manifest["chunk_size"])
        for name, (shape, dtype) in arrays.items():
            fill = np.nan if np.dtype(dtype).kind == "f" else -1
            group.create_array(
                name,
                shape=shape,
                dtype=dtype,
                chunks=(chunk, *shape[1:]),
                compressors=_compressors(),
                fill_value=fill,
            )
        # a (empty) subgroup, so that Zarr sees a member of the hierarchy, not a stray folder
        group.create_group(DONE_DIR)
        os.rename(tmp, out)  # replaces an empty folder atomically, fails on a non-empty one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "created"


def _remove_leftovers(out: Path) -> None:
    """Delete the temporary files of writes that a killed run left behind.

    Zarr writes each chunk file to ``<chunk>.<uuid>.partial`` and renames it, and markers go
    through ``done/.<marker>.<pid>.tmp``; a process killed in between leaves those. They are
    never read, but would waste space and make two stores of the same run differ. Only called
    before any process of this run writes.
    """
    for p in out.rglob("*.partial"):
        with contextlib.suppress(OSError):
            p.unlink()
    for p in (out / DONE_DIR).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


class ResultStore:
    """An opened result store: write finished chunks, check which chunks are finished."""

    def __init__(self, path: str | os.PathLike, mode: str = "r+") -> None:
        import zarr

        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise StoreError(f"{self.path} is not a result store (no zarr.json)")
        self.manifest = manifest
        self.group = zarr.open_group(self.path, mode=mode)
        self.n = int(manifest["data"]["n_examples"])
        self.chunk_size = int(manifest["chunk_size"])
        self.n_chunks = -(-self.n // self.chunk_size)
        self.names = list(manifest["arrays"])
        # write_empty_chunks: an all-zero (or all-fill) chunk still gets its file, so a chunk's
        # files exist exactly when it was written
        self.arrays = {
            name: self.group[name].with_config({"write_empty_chunks": True}) for name in self.names
        }

    def bounds(self, i: int) -> tuple[int, int]:
        start = i * self.chunk_size
        return start, min(self.n, start + self.chunk_size)

    def marker(self, i: int) -> Path:
        return self.path / DONE_DIR / f"{i:08d}.json"

    def is_done(self, i: int) -> bool:
        """True if chunk ``i`` has a marker and its data hashes to what the marker records."""
        start, stop = self.bounds(i)
        try:
            doc = json.loads(self.marker(i).read_text(encoding="utf-8"))
            if (doc.get("chunk"), doc.get("start"), doc.get("stop")) != (i, start, stop):
                return False
            hashes = doc["sha256"]
            return all(
                hashes.get(name) == array_hash(self.arrays[name][start:stop])
                for name in self.names
            )
        except FileNotFoundError:
            return False
        except Exception:  # unparsable marker, truncated/corrupt chunk file: recompute it
            return False

    def write_chunk(self, i: int, data: Mapping[str, np.ndarray]) -> None:
        """Write chunk ``i`` of every array, then (atomically) its marker."""
        start, stop = self.bounds(i)
        with contextlib.suppress(FileNotFoundError):
            self.marker(i).unlink()  # an old marker must not vouch for the new bytes
        hashes = {}
        for name in self.names:
            block = np.ascontiguousarray(data[name])
            expected = (stop - start, *self.arrays[name].shape[1:])
            if block.shape != expected:  # pragma: no cover - guarded by the runner
                raise StoreError(f"chunk {i} of {name!r} has shape {block.shape}, not {expected}")
            self.arrays[name][start:stop] = block
            hashes[name] = array_hash(block)
        doc = {"chunk": i, "start": start, "stop": stop, "sha256": hashes}
        target = self.marker(i)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    def finished(self) -> list[int]:
        """Indices of the chunks with a valid marker and matching data."""
        return [i for i in range(self.n_chunks) if self.is_done(i)]
