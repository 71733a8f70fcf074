"""Fixtures shared by the supernet tests: the mini experiment every training test runs."""

import pytest

MINI = """\
name: {name}
space:
  resolutions: [32]
  frames: 8
  patch_size: 4
  time_embed_dim: 64
  stages:
    - {{widths: [32, 64], depths: [1, 2], attention: false}}
    - {{widths: [32, {width}], depths: [1, 2], attention: true}}
train:
  steps: 6
  image_steps: 1
  base_batch: 2
  max_batch: 2
  lr: 1.0e-3
  lr_warmup_steps: 2
  sampling_warmup_steps: 3
  buckets: 4
  checkpoint_every: 2
  keep_checkpoints: 10
sample:
  steps: 2
  n: 1
"""


@pytest.fixture(scope="session")
def mini_experiment():
    """``mini_experiment(name, width)``: a two-stage, 32 px experiment YAML (text) that trains in seconds."""
    return lambda name="mini", width=64: MINI.format(name=name, width=width)
