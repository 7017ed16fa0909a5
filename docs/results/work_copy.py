"""A study folder's records copied to a scratch folder, and the new ones copied back.

Used by ``tune_orders_2.py`` (session 24) and ``task_weight_power.py`` (session 25): a
re-reading of a committed folder runs in a copy holding the folder's runs, so every run
already recorded is reused by key, and only the runs the copy added go back to the folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

RUN_FILES = ("runs.jsonl", "second-seed-runs.jsonl")
#: runs of other readings kept in subfolders, read so that they are reused, not retrained
EXTRA_RUNS = ("nai-task-weight-one-se/runs.jsonl",)


def folder_data_work(argv: list[str], scratch: str) -> tuple[Path, str, Path]:
    """``FOLDER [DATA_DIR]`` from the command line, and the copy's place under ``/tmp``."""
    folder = Path(argv[1])
    data = argv[2] if len(argv) > 2 else "../shared/data"
    return folder, data, work_dir(folder, scratch)


def work_dir(folder: Path, scratch: str) -> Path:
    """The copy's place: ``/tmp/<scratch>/<folder name>``."""
    return Path("/tmp") / scratch / folder.name


def start_copy(folder: Path, work: Path) -> None:
    """Fill ``work`` with ``folder``'s records, once: a rerun resumes the copy."""
    work.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if not (work / name).exists():
            text = (folder / name).read_text() if (folder / name).exists() else ""
            if name == "runs.jsonl":
                text += "".join((folder / e).read_text() for e in EXTRA_RUNS
                                if (folder / e).exists())
            (work / name).write_text(text)
            (work / f"{name}.start").write_text(str(len(text.splitlines())))


def copy_back(folder: Path, work: Path, out: Path, outputs: Iterable[str]) -> None:
    """Copy ``outputs`` from ``work`` to ``out`` and append the copy's new records to
    ``folder``'s (once: a rerun after a finished one appends nothing twice)."""
    out.mkdir(exist_ok=True)
    # the copy's runs.jsonl holds every run the folder had; only its new lines go back (below)
    for name in set(outputs) - {"runs.jsonl"}:
        shutil.copy(work / name, out / name)
    if (work / "copied-back").exists():
        return
    for name in RUN_FILES:
        start = int((work / f"{name}.start").read_text())
        new = (work / name).read_text().splitlines()[start:]
        if new:
            with open(folder / name, "a") as fh:
                fh.write("\n".join(new) + "\n")
        print(f"{name}: {len(new)} new records")
    (work / "copied-back").touch()
