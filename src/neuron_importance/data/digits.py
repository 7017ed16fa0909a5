"""scikit-learn's bundled 8x8 handwritten digits: the offline stand-in for MNIST.

The data (1797 images, UCI "Optical Recognition of Handwritten Digits", pixel counts 0-16) ship
inside scikit-learn, so examples and tests that need real images still run where the shared
MNIST files are absent.
"""

from __future__ import annotations

import torch
from torch import Tensor


def load_digits_dataset(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return ``(X_train, y_train, X_test, y_test)`` from ``sklearn.datasets.load_digits``.

    Images are float32 ``(N, 1, 8, 8)`` scaled by 1/16 into ``[0, 1]``; labels are int64.
    The split is stratified by class, 80 % train / 20 % test (1437 / 360 images), fixed by
    ``seed`` (``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # scikit-learn is a test/extra dependency, not a core one
        raise ImportError(
            "load_digits_dataset needs scikit-learn (pip install scikit-learn)"
        ) from err
    bunch = load_digits()
    x = bunch.images.astype("float32") / 16.0  # raw values are counts 0..16
    y = bunch.target.astype("int64")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    return (
        torch.from_numpy(x_tr).unsqueeze(1),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te).unsqueeze(1),
        torch.from_numpy(y_te),
    )
