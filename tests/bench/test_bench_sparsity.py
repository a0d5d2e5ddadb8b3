"""2:4 structured sparsity: the pattern, its upkeep in training, and its quality cost."""

from __future__ import annotations

import torch
from torch import nn

from slicebox.bench import image
from slicebox.bench.config import TrainConfig
from slicebox.bench.loop import Workload, run_training
from slicebox.bench.sparsity import (
    TwoFourMasks,
    is_2_4_sparse,
    is_prunable,
    layer_weight,
    mask_2_4,
    semi_structured_speedup,
    zeros_per_group,
)

# The accuracy a 2:4-pruned, fine-tuned digits ResNet may lose against the same model
# dense at the moment of pruning (eval set of 360 images: 0.02 is about 7 of them).
SPARSE_ACCURACY_TOLERANCE = 0.02


def test_mask_keeps_the_two_largest_of_every_four_along_the_input_dim() -> None:
    weight = torch.tensor([[0.1, -0.9, 0.3, 0.5, 4.0, 3.0, -2.0, 1.0]])
    assert mask_2_4(weight).tolist() == [[0, 1, 0, 1, 1, 1, 0, 0]]


def test_conv_groups_run_along_input_channels_not_kernel_positions() -> None:
    conv = nn.Conv2d(8, 4, 3)
    masked = conv.weight.detach() * mask_2_4(conv.weight)
    by_channel = masked.permute(0, 2, 3, 1).reshape(-1, 4)  # groups of 4 input channels
    assert bool(((by_channel == 0).sum(dim=1) == 2).all())
    assert is_2_4_sparse(masked)


def test_dense_and_over_pruned_weights_fail_the_check() -> None:
    weight = torch.randn(16, 32)
    assert not is_2_4_sparse(weight)
    three_zeros = weight * mask_2_4(weight)
    three_zeros[0, 0:4] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert not is_2_4_sparse(three_zeros)
    assert zeros_per_group(three_zeros)[0] == 3


def test_layers_whose_input_dim_is_not_a_multiple_of_four_are_left_dense() -> None:
    assert not is_prunable(nn.Conv2d(1, 8, 3))  # the digits stem: one input channel
    assert not is_prunable(nn.Linear(10, 4))
    assert is_prunable(nn.Linear(12, 4)) and is_prunable(nn.Conv2d(8, 8, 3))


def test_masks_survive_optimizer_steps_and_weight_decay() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    masks = TwoFourMasks.prune(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(8, 16)).pow(2).mean().backward()
        optimizer.step()
        masks.apply()
    assert masks.layer_names == ["0", "2"]
    assert all(is_2_4_sparse(layer_weight(layer)) for layer in (model[0], model[2]))


def test_semi_structured_speed_is_not_claimed_without_a_gpu() -> None:
    model = nn.Linear(64, 64)
    TwoFourMasks.prune(model)
    speedup, reason = semi_structured_speedup(model, (torch.randn(4, 64),), "cpu")
    assert speedup is None and "compute capability" in reason


def test_pruned_fine_tuned_model_stays_within_tolerance_of_dense() -> None:
    kept: list[nn.Module] = []

    def build(config: TrainConfig) -> Workload:
        workload = image.build(config)
        kept.append(workload.model)
        return workload

    result = run_training("image", TrainConfig(quick=True, precision="sparse", seed=1), build)

    assert result.status == "ok" and result.reached_target
    assert result.dense_quality is not None and result.quality is not None
    assert result.quality >= result.dense_quality - SPARSE_ACCURACY_TOLERANCE
    pruned = [m for m in kept[0].modules() if is_prunable(m)]
    assert len(pruned) >= 5  # every 3x3 / 1x1 conv past the stem, and the classifier
    for layer in pruned:
        assert is_2_4_sparse(layer_weight(layer)), layer
    assert "compute capability" in result.note  # CPU: quality cost only, no speed claim


def test_sparse_lm_keeps_every_linear_layer_2_4() -> None:
    kept: list[nn.Module] = []

    def build(config: TrainConfig) -> Workload:
        from slicebox.bench import lm

        workload = lm.build(config)
        kept.append(workload.model)
        return workload

    result = run_training("lm", TrainConfig(quick=True, precision="sparse"), build)
    linears = [m for m in kept[0].modules() if isinstance(m, nn.Linear)]
    assert result.reached_target
    assert linears and all(is_2_4_sparse(layer_weight(layer)) for layer in linears)
