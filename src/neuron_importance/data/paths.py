"""Where the shared data sets live.

The data sets (MNIST, Fashion-MNIST, the DeepLIFT genomics simulation, ...) are not shipped
with the package; they sit in a ``shared/data`` folder next to the repository. The lookup order
is the same for every loader so that one environment variable redirects all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that, when set, names the data folder outright.
DATA_ENV_VAR = "NEURON_IMPORTANCE_DATA"


def _repository_root() -> Path:
    # This file is src/neuron_importance/data/paths.py: parents[1] is the package, parents[2]
    # is ``src`` and parents[3] the repository root (for an editable or in-tree install; for a
    # wheel install the candidate simply will not exist).
    return Path(__file__).resolve().parents[3]


def data_search_locations() -> list[Path]:
    """The folders :func:`default_data_dir` considers, in order (for error messages).

    The environment variable comes first when set, then ``../shared/data`` relative to the
    current working directory, then ``../shared/data`` relative to the repository root.
    """
    locations: list[Path] = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        locations.append(Path(env).expanduser())
    locations.append(Path.cwd() / ".." / "shared" / "data")
    locations.append(_repository_root() / ".." / "shared" / "data")
    return locations


def default_data_dir() -> Path | None:
    """Return the folder that holds the shared data sets, or ``None`` if none is found.

    Order: the environment variable ``NEURON_IMPORTANCE_DATA`` if it is set (returned even if
    the folder does not exist, so that a typo surfaces as a clear "not found" from the loader
    rather than a silent fallback), else the first existing of ``../shared/data`` relative to
    the current working directory and ``../shared/data`` relative to the repository root.
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    for candidate in data_search_locations():
        if candidate.is_dir():
            return candidate.resolve()
    return None
