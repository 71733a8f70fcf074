"""The I3D files whose FVDs are published, known by their sha256 (torch-free).

Only features of such a file (run with the published BatchNorm epsilon) are
``comparable_to_published`` (:func:`is_comparable_to_published`); every other extractor's scores
compare only with scores of the same weights. :mod:`sned.predictors.i3d` names its extractors from
this table; :mod:`sned.predictors.fvd` re-exports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sned.supernet.base.errors import UserError


@dataclass(frozen=True)
class PublishedWeights:
    """An I3D file whose FVDs are published, known by its sha256.

    Attributes:
        name: the extractor name's stem (``"i3d-kinetics400"``); the extractor is ``"<name>:<sha12>"``.
        description: what the file is and where it comes from.
        bn_eps: the BatchNorm epsilon the published FVDs were computed with (1e-5 for TATS's
            ``i3d_pretrained_400.pt``); ``None`` for a TorchScript detector, whose epsilon is compiled in.
    """

    name: str
    description: str
    bn_eps: float | None


# sha256 of the published FVD networks -> what they are. It is meant to hold the sha256 of TATS's
# i3d_pretrained_400.pt (the TF-Hub Kinetics-400 I3D in pytorch-i3d layout, run with BatchNorm eps
# 1e-5 by TATS / VideoGPT / LVDM / cd-fvd) and of StyleGAN-V's i3d_torchscript.pt. It is empty
# because sned was written offline and has never seen those files: a hash not computed from the
# file itself would let any file pass as the published network. Once a file is checked (its FVDs
# on a public set match the paper's), add it with register_published_weights or here, e.g.
#   "<64 hex digits>": PublishedWeights("i3d-kinetics400", "TATS i3d_pretrained_400.pt ...", 1e-5),
PUBLISHED_I3D_WEIGHTS: dict[str, PublishedWeights] = {}

_SHA256 = re.compile(r"[0-9a-f]{64}")


def register_published_weights(weights_sha256: str, weights: PublishedWeights) -> None:
    """Add a published I3D file to :data:`PUBLISHED_I3D_WEIGHTS`.

    Args:
        weights_sha256: the file's sha256, 64 lowercase hex digits (``sha256sum FILE``).
        weights: its name, description and BatchNorm epsilon.

    Raises:
        UserError: a malformed sha256, or one already registered.
    """
    if not isinstance(weights_sha256, str) or not _SHA256.fullmatch(weights_sha256):
        raise UserError(f"weights_sha256 must be 64 lowercase hex digits (sha256sum output); got {weights_sha256!r}")
    if weights_sha256 in PUBLISHED_I3D_WEIGHTS:
        raise UserError(f"sha256 {weights_sha256[:12]} is already registered as "
                        f"{PUBLISHED_I3D_WEIGHTS[weights_sha256].name!r}")
    PUBLISHED_I3D_WEIGHTS[weights_sha256] = weights


def published_extractor_name(weights_sha256: str) -> str | None:
    """``"<published name>:<sha12>"`` for a file in :data:`PUBLISHED_I3D_WEIGHTS`, else ``None``."""
    published = PUBLISHED_I3D_WEIGHTS.get(weights_sha256)
    return None if published is None else f"{published.name}:{weights_sha256[:12]}"


def is_comparable_to_published(extractor: str, weights_sha256: str) -> bool:
    """Whether features of this extractor compare with published FVDs.

    True only for a published file run as published: its sha256 is in
    :data:`PUBLISHED_I3D_WEIGHTS` and the name is exactly :func:`published_extractor_name` (no
    BatchNorm-epsilon suffix). Names written by older sned versions (``"i3d-kinetics400"``) are not.
    """
    name = published_extractor_name(weights_sha256)
    return name is not None and extractor == name


__all__ = ["PUBLISHED_I3D_WEIGHTS", "PublishedWeights", "is_comparable_to_published", "published_extractor_name",
           "register_published_weights"]
