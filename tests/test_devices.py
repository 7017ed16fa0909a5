"""Same numbers on every device and dtype (CUDA runs where present; CI has CPU only)."""

import pytest
import torch
from torch import nn

from neuron_importance import DeepLift, IntegratedGradients

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel", "genomics_default"])
def test_deeplift_device_and_dtype(device, dtype, rule):
    net = _net().to(device=device, dtype=dtype)
    x = torch.randn(4, 1, 8, 8, dtype=dtype, device=device)
    b = torch.randn(4, 1, 8, 8, dtype=dtype, device=device)
    attr, delta = DeepLift(net, rule=rule).attribute(x, b, target=1,
                                                     return_convergence_delta=True)
    assert attr.device.type == device and attr.dtype == dtype
    assert delta.abs().max() < (1e-8 if dtype == torch.float64 else 1e-3)
    cpu = DeepLift(net.cpu().double(), rule=rule).attribute(x.cpu().double(), b.cpu().double(),
                                                          target=1)
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(attr.cpu().double(), cpu, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_integrated_gradients_device(device):
    net = _net().to(device)
    x = torch.randn(3, 1, 8, 8, device=device)
    attr = IntegratedGradients(net).attribute(x, target=0, n_steps=16)
    assert attr.device.type == device and attr.shape == x.shape
