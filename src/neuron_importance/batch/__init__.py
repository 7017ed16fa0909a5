"""Dataset-scale attribution: score every example of a data set into a resumable Zarr store.

``attribute_dataset(model, data, method, out, ...)`` is the Python form of
``neuron-importance attribute``; see ``docs/dataset-scale.md``. Sources are in
:mod:`.sources`, the method table in :mod:`.methods`, the store format in :mod:`.store` and
the (multi-process) loop in :mod:`.runner`.
"""

from __future__ import annotations

from .runner import RunResult, attribute_dataset, run_attribution
from .store import ResultStore, StoreError, StoreMismatchError

__all__ = [
    "ResultStore",
    "RunResult",
    "StoreError",
    "StoreMismatchError",
    "attribute_dataset",
    "run_attribution",
]
