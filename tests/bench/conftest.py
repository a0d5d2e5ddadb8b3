"""Shared settings for the bench tests."""

from __future__ import annotations

import torch

# One thread: the tests check behaviour, not speed, and on a small shared CI box a
# second OpenMP thread only waits for a core that another process holds.
torch.set_num_threads(1)
