"""2:4 structured sparsity: masks, their upkeep during fine-tuning, and the speed check.

The pattern is NVIDIA's (Ampere and later): in every group of 4 consecutive weights
along the input dimension, 2 are zero. Masks keep the 2 of largest magnitude, the
magnitude-pruning recipe of NVIDIA's ASP: train dense, prune once, fine-tune with the
masks held fixed. The masks measure the quality cost on any device; only a GPU with
semi-structured kernels can turn the zeros into speed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from slicebox.bench.precision import semi_structured_reason

GROUP = 4
KEPT = 2
PROBE_ROWS = 4096  # rows of input when timing semi-structured kernels


def _input_last(weight: torch.Tensor) -> torch.Tensor:
    """A view of a Linear/Conv weight whose last dimension is the input dimension."""
    if weight.dim() == 2:  # Linear: [out, in]
        return weight
    if weight.dim() == 4:  # Conv2d: [out, in, kh, kw] -> [out, kh, kw, in], as ASP groups it
        return weight.permute(0, 2, 3, 1)
    raise ValueError(
        f"2:4 sparsity handles Linear and Conv2d weights, got shape {tuple(weight.shape)}"
    )


def is_prunable(module: nn.Module) -> bool:
    """Linear and Conv2d layers whose input dimension splits into groups of 4."""
    if isinstance(module, nn.Linear):
        return module.in_features % GROUP == 0
    if isinstance(module, nn.Conv2d):
        return (module.in_channels // module.groups) % GROUP == 0
    return False


def layer_weight(module: nn.Module) -> torch.Tensor:
    """A Linear/Conv layer's weight, typed as the tensor it is."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor to prune")
    return weight


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape keeping the 2 largest of every 4 along the input dim."""
    grouped = _input_last(weight.detach())
    groups = grouped.reshape(-1, GROUP).abs()
    # topk, not a threshold: ties (zeros included) still keep exactly two per group.
    keep = groups.topk(KEPT, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, keep, 1.0).reshape(grouped.shape)
    if weight.dim() == 4:
        mask = mask.permute(0, 3, 1, 2)
    return mask.contiguous()


def zeros_per_group(weight: torch.Tensor) -> torch.Tensor:
    """How many of each group of 4 consecutive input-dim weights are exactly zero."""
    grouped = _input_last(weight.detach())
    if grouped.shape[-1] % GROUP:
        raise ValueError(f"input dimension {grouped.shape[-1]} is not a multiple of {GROUP}")
    return (grouped.reshape(-1, GROUP) == 0).sum(dim=1)


def is_2_4_sparse(weight: torch.Tensor) -> bool:
    """True when exactly 2 of every 4 consecutive weights along the input dim are zero."""
    return bool((zeros_per_group(weight) == GROUP - KEPT).all())


@dataclass
class TwoFourMasks:
    """The masks of one pruned model, re-applied after every optimizer step."""

    modules: dict[str, nn.Module]
    masks: dict[str, torch.Tensor]

    @classmethod
    def prune(cls, model: nn.Module) -> TwoFourMasks:
        modules: dict[str, nn.Module] = {}
        masks: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if is_prunable(module):
                modules[name] = module
                masks[name] = mask_2_4(layer_weight(module))
        if not masks:
            raise ValueError("model has no Linear/Conv2d layer whose input dim is a multiple of 4")
        pruned = cls(modules, masks)
        pruned.apply()
        return pruned

    @torch.no_grad()
    def apply(self) -> None:
        # Zeroing the weights after each step (rather than masking gradients) also
        # undoes what weight decay and Adam's momentum would move into pruned slots.
        for name, module in self.modules.items():
            layer_weight(module).mul_(self.masks[name])

    @property
    def layer_names(self) -> list[str]:
        return list(self.masks)


def _fits_semi_structured(layer: nn.Linear) -> bool:
    # cuSPARSELt/CUTLASS fp16 minimums: rows a multiple of 32, columns of 64.
    return layer.out_features % 32 == 0 and layer.in_features % 64 == 0


def _time_forward(run: Callable[[], object], repeats: int) -> float:
    for _ in range(3):  # warm-up: kernel selection and caches
        run()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def semi_structured_speedup(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], device: str, repeats: int = 30
) -> tuple[float | None, str]:
    """Forward-pass speed-up of the 2:4-pruned ``model`` on semi-structured kernels.

    Compares the same fp16 model dense and with its Linear layers' weights converted by
    ``torch.sparse.to_sparse_semi_structured``. Returns (speed-up, what was done) or
    (None, why it could not be measured). ``model`` must already be 2:4 pruned: the
    conversion trusts the pattern.
    """
    reason = semi_structured_reason(device)
    if reason is not None:
        return None, reason
    from torch.sparse import to_sparse_semi_structured

    dense = copy.deepcopy(model).to(device=device, dtype=torch.float16).eval()
    sparse = copy.deepcopy(dense)
    converted, failures = 0, []
    for name, module in sparse.named_modules():
        if not (isinstance(module, nn.Linear) and _fits_semi_structured(module)):
            continue
        if not is_2_4_sparse(module.weight):
            continue
        try:
            module.weight = nn.Parameter(
                to_sparse_semi_structured(module.weight.detach()), requires_grad=False
            )
            converted += 1
        except (RuntimeError, ValueError) as exc:
            failures.append(f"{name}: {exc}")
    if converted == 0:
        detail = f" ({'; '.join(failures)})" if failures else ""
        return None, f"no Linear layer fits semi-structured kernels' shape limits{detail}"
    # Tiled to a batch a GPU is built for: at a few dozen rows, launch overhead would
    # hide whatever the kernels gain.
    repeat = max(1, -(-PROBE_ROWS // len(inputs[0])))
    cast = tuple(
        t.repeat(repeat, *([1] * (t.dim() - 1))).to(
            device=device, dtype=torch.float16 if t.is_floating_point() else t.dtype
        )
        for t in inputs
    )
    with torch.inference_mode():
        dense_s = _time_forward(lambda: dense(*cast), repeats)
        sparse_s = _time_forward(lambda: sparse(*cast), repeats)
    return dense_s / sparse_s, f"{converted} Linear layers on semi-structured kernels (fp16)"
