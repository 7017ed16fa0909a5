"""Seeded tensors and small models shared by the attribution test modules.

Imported as ``nets`` (conftest.py puts tests/ on ``sys.path``). Only what several test modules
use unchanged lives here; a model that differs in substance stays with its tests.
"""

from __future__ import annotations

import torch
from torch import nn

DT = torch.float64


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: test data that does not depend on the global RNG."""
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, dtype: torch.dtype = DT) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=gen(seed))


class SmallCNN(nn.Module):
    """Conv2d(2→4, 3) → ReLU → MaxPool2d(2) → Linear(16→3), for inputs of shape (2, 6, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class TwoInputNet(nn.Module):
    """f(a, b; scale) = W·[ReLU(A a), act_b(B b)] ⊙ scale — two inputs and an extra tensor arg.

    ``act_b`` is the nonlinearity module on the second input's branch (a module of its own,
    as Captum wants one module per use). It holds no parameters, so under one seed the
    weights are the same whatever it is.
    """

    def __init__(self, act_b: nn.Module) -> None:
        super().__init__()
        self.fa = nn.Linear(5, 6)
        self.act_a = nn.ReLU()
        self.fb = nn.Linear(4, 6)
        self.act_b = act_b
        self.fc = nn.Linear(12, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.act_a(self.fa(a)), self.act_b(self.fb(b))], dim=1)
        return self.fc(h) * scale
