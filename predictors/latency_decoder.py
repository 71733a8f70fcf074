"""The decoder of a latent space as a measured fixed block of its latency table.

A latent model's video costs ``steps`` UNet forwards plus one pass of the autoencoder's decoder
(the encoder only where a task encodes, e.g. video editing). :func:`measure_decoder` times the
decoder per resolution on the table's own device, dtype, batch, threads and clock, with the same
interleaved rounds as the blocks (:func:`~sned.predictors.latency_timing.time_interleaved`), and
stores it in the table's metadata under ``decoder``; :meth:`LatencyTable.decoder_ms` reads it and
the search adds it once per video (``--budget-ms B --steps N``: ``N x UNet + decoder <= B``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sned.predictors.latency import LatencyTable
from sned.predictors.latency_timing import resolve_device, resolve_dtype, summarise, time_interleaved
from sned.supernet.base.errors import UserError
from sned.supernet.space import SearchSpace
from sned.supernet.threads import torch_threads


def measure_decoder(table_path: str | Path, space: SearchSpace, autoencoder: Any, *, repeats: int = 15,
                    warmup: int = 3, resolutions: Sequence[int] | None = None, seed: int = 0,
                    progress: bool = False) -> LatencyTable:
    """Time ``autoencoder.decode`` of one latent clip per resolution and store it in the table (atomically).

    Args:
        table_path: a latency table of ``space`` (a latent space), measured on this machine.
        space: the space; its latent must match the autoencoder's.
        autoencoder: a :class:`~sned.supernet.vae.VideoAutoencoder` (moved to the table's device and dtype).
        repeats, warmup: timed and untimed rounds.
        resolutions: pixel resolutions to measure (default: the table's).
        seed: the random latents and the round order.

    Returns:
        The saved table.

    Raises:
        UserError: a pixel space, an autoencoder of another latent, or a table of another space.
    """
    from tqdm import tqdm

    from sned.supernet.latent import check_autoencoder

    if space.spec.latent is None:
        raise UserError(f"experiment {space.name!r} is a pixel-space experiment: it has no decoder to measure")
    check_autoencoder(autoencoder, space, "the autoencoder")
    table = LatencyTable.load(table_path, space)
    meta = table.meta
    device = resolve_device(str(meta.get("device_type", "cpu")))
    dtype = resolve_dtype(str(meta.get("dtype", "fp32")))
    batch, threads, clock = int(meta.get("batch", 1)), int(meta.get("threads", 1)), str(meta.get("clock", "wall"))
    resolutions = [int(r) for r in (resolutions or meta.get("resolutions") or space.resolutions)]
    factor = int(autoencoder.spatial_factor)
    generator = torch.Generator(device=device).manual_seed(seed)
    autoencoder = autoencoder.to(device=device, dtype=dtype).eval()
    with torch_threads(threads), tqdm(total=repeats * len(resolutions), desc="latency decoder", unit="sample",
                                      disable=not progress) as bar:
        fns = []
        for res in resolutions:
            latent = torch.randn(batch, autoencoder.latent_channels, space.spec.unet_frames, res // factor,
                                 res // factor, generator=generator, device=device, dtype=dtype)
            fns.append(lambda z=latent: autoencoder.decode(z))
        samples = time_interleaved(fns, device, warmup=warmup, repeats=repeats, rng=np.random.default_rng(seed),
                                   min_sample_ms=0.0, clock=clock, progress=bar)
    stats = summarise(samples)
    entry: dict[str, Any] = {
        "autoencoder": autoencoder.describe(), "sha256": autoencoder.sha256,
        **{name: {str(r): round(float(v), 4) for r, v in zip(resolutions, values, strict=True)}
           for name, values in stats.items()},
        "repeats": repeats, "warmup": warmup, "batch": batch, "frames": space.spec.frames,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    updated = LatencyTable(table.rows, {**meta, "decoder": entry}, table_path)
    updated.save(table_path)
    return updated


__all__ = ["measure_decoder"]
