"""Language modelling: a small GPT on the Python documentation that ships with Python.

``pydoc_data.topics`` (the text behind ``help("topics")``, ~460 KB of English prose
and code) is in every CPython install, so no download. Byte-level (vocabulary 256):
no tokenizer to fit, nothing to ship. The last 10% of the text is the eval set; the
quality metric is eval perplexity (lower is better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slicebox.bench.config import TrainConfig
from slicebox.bench.loop import Workload, run_training
from slicebox.bench.results import RunResult

NAME: Final = "lm"
VOCAB: Final = 256
EVAL_FRACTION: Final = 0.1
EVAL_SEED: Final = 1234  # fixed: every run is scored on the same eval windows


@dataclass(frozen=True)
class LMSize:
    d_model: int
    layers: int
    heads: int
    context: int
    batch_size: int
    max_epochs: int
    target: float  # eval perplexity
    lr: float
    eval_windows: int
    eval_every_steps: int


# Full: ~25 s to perplexity 5.5 on 2 CPU cores (fp32). Quick: ~1-2 s per core in fp32;
# its size is set by bf16 on CPUs without bf16 units, which runs ~8-12x slower.
FULL: Final = LMSize(
    d_model=128,
    layers=2,
    heads=4,
    context=64,
    batch_size=32,
    max_epochs=8,
    target=5.5,
    lr=5e-3,
    eval_windows=128,
    eval_every_steps=25,
)
QUICK: Final = LMSize(
    d_model=64,
    layers=1,
    heads=4,
    context=32,
    batch_size=32,
    max_epochs=8,
    target=11.0,
    lr=5e-3,
    eval_windows=64,
    eval_every_steps=20,
)


def load_text() -> bytes:
    """The bundled Python docs, in a fixed order, as UTF-8 bytes."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")


class CausalSelfAttention(nn.Module):
    # Plain Linear layers (not nn.MultiheadAttention, whose input projection is a bare
    # Parameter) so 2:4 pruning and semi-structured kernels reach every projection.
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """GPT-2's shape (pre-norm blocks, learned positions), scaled to fit a CPU core."""

    def __init__(self, size: LMSize) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, size.d_model)
        self.positions = nn.Embedding(size.context, size.d_model)
        self.blocks = nn.Sequential(*(Block(size.d_model, size.heads) for _ in range(size.layers)))
        self.ln = nn.LayerNorm(size.d_model)
        self.head = nn.Linear(size.d_model, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tokens(idx) + self.positions(positions)
        return self.head(self.ln(self.blocks(x)))


def _windows(data: torch.Tensor, starts: torch.Tensor, context: int) -> torch.Tensor:
    # One extra byte per window: inputs are [:-1], next-byte targets [1:].
    return data[starts[:, None] + torch.arange(context + 1)]


def next_byte_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), windows[:, 1:].reshape(-1))


def build(config: TrainConfig) -> Workload:
    size = QUICK if config.quick else FULL
    batch_size, lr = config.batch_and_lr(size.batch_size, size.lr)
    text = torch.from_numpy(np.frombuffer(load_text(), dtype=np.uint8).astype(np.int64))
    split = int(len(text) * (1 - EVAL_FRACTION))
    train, held_out = text[:split], text[split:]
    eval_starts = torch.randint(
        0,
        len(held_out) - size.context - 1,
        (size.eval_windows,),
        generator=torch.Generator().manual_seed(EVAL_SEED),
    )
    eval_windows = _windows(held_out, eval_starts, size.context).to(config.device)
    train_windows = (len(train) - 1) // size.context
    generator = torch.Generator().manual_seed(config.seed)
    model = TinyGPT(size).to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def epoch_batches(epoch: int) -> list[torch.Tensor]:
        # Non-overlapping windows from a random phase each epoch: every byte is seen
        # once per epoch, at a different position in its window each time.
        phase = int(torch.randint(0, size.context, (1,), generator=generator))
        count = (len(train) - phase - 1) // size.context
        starts = phase + size.context * torch.randperm(count, generator=generator)
        return [
            _windows(train, chunk, size.context).to(config.device)
            for chunk in starts.split(batch_size)
        ]

    def perplexity(m: nn.Module) -> float:
        return math.exp(float(next_byte_loss(m, eval_windows)))

    return Workload(
        model=model,
        optimizer=optimizer,
        epoch_batches=epoch_batches,
        loss=next_byte_loss,
        batch_samples=len,
        evaluate=perplexity,
        quality_metric="perplexity",
        higher_is_better=False,
        quality_target=size.target if config.quality_target is None else config.quality_target,
        batch_size=batch_size,
        max_epochs=size.max_epochs,
        train_samples=train_windows,
        eval_samples=size.eval_windows,
        learning_rate=lr,
        eval_every_steps=size.eval_every_steps,
        probe_inputs=(eval_windows[:, :-1],),
        generator=generator,  # the data position a checkpoint keeps
    )


def train(config: TrainConfig) -> RunResult:
    """Train the byte-level GPT to its eval perplexity target."""
    return run_training(NAME, config, build)
