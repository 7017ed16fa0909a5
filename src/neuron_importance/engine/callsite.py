"""Find the line of user code that called an intercepted operation."""

from __future__ import annotations

import os
import traceback

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_call_site() -> str:
    """Return ``file:line in function: code`` of the innermost frame outside torch and us."""
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path.startswith(_TORCH_DIR) or path.startswith(_OWN_DIR):
            continue
        if frame.filename.startswith("<frozen"):
            continue
        code = f": {frame.line.strip()}" if frame.line else ""
        return f"{frame.filename}:{frame.lineno} in {frame.name}{code}"
    return "<unknown location>"
