import os
import sys
import warnings

import pytest
import torch

# The oracle package lives under tests/ and is imported as ``oracles``.
sys.path.insert(0, os.path.dirname(__file__))

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
