"""Which precision variants a device can run, and the autocast context for each."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from slicebox.bench.results import Precision

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: the suite asks "can this slice run fp16?"
# for CPU slices in its own process, which should not pay torch's import time.

# Semi-structured (2:4) sparse kernels exist from Ampere (compute capability 8.0) on.
SEMI_STRUCTURED_MIN_CAPABILITY = (8, 0)


def device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def unsupported_reason(precision: Precision, device: str) -> str | None:
    """Why ``device`` cannot run ``precision`` for training, or None when it can.

    2:4 sparsity is always runnable: its masks measure the quality cost on any device.
    Whether its *speed* can be measured is :func:`semi_structured_reason`'s question.
    """
    if device_type(device) == "cpu":
        if precision == "fp16":
            return (
                "fp16 needs a CUDA GPU: this CPU has no native fp16 arithmetic, so an fp16 "
                "run here would time emulation, not the variant"
            )
        return None
    import torch

    if not torch.cuda.is_available():
        return f"device {device!r} requested but torch sees no CUDA GPU"
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name(torch.device(device))
        return f"bf16 needs compute capability >= 8.0; {name} does not have it"
    return None


def semi_structured_reason(device: str) -> str | None:
    """Why semi-structured sparse kernels cannot be timed on ``device``, or None."""
    if device_type(device) != "cuda":
        return (
            "semi-structured 2:4 sparse kernels need an NVIDIA GPU with compute capability "
            ">= 8.0; only the quality cost was measured (masked dense weights)"
        )
    import torch

    if not torch.cuda.is_available():
        return f"device {device!r} requested but torch sees no CUDA GPU"
    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability < SEMI_STRUCTURED_MIN_CAPABILITY:
        return (
            f"semi-structured 2:4 sparse kernels need compute capability >= 8.0, "
            f"this GPU has {capability[0]}.{capability[1]}"
        )
    return None


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    import torch

    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return None  # fp32, and sparse (whose masks are trained in fp32)


@contextlib.contextmanager
def autocast(precision: Precision, device: str) -> Iterator[None]:
    """Mixed precision the way users run it: fp32 master weights, autocast forward."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    import torch

    with torch.autocast(device_type=device_type(device), dtype=dtype):
        yield


def grad_scaler(precision: Precision, device: str) -> torch.amp.GradScaler | None:
    import torch

    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range.
    if precision == "fp16" and device_type(device) == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
