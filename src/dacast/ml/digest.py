"""One SHA-256 of tensors for every checkpoint's metadata (training data, weights)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def tensors_sha256(*tensors: Tensor) -> str:
    """SHA-256 (hex) over the shape and the float64 bytes of each tensor, in order (any device, any float type)."""
    h = hashlib.sha256()
    for a in tensors:
        h.update(repr(tuple(a.shape)).encode())
        h.update(a.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


__all__ = ["tensors_sha256"]
