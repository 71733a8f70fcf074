"""Elastic ops: each slices one set of max-size weights to the shape its ``spec`` argument asks for.

Every op has ``forward(x, spec)`` (no mutable ``active_*`` state) and ``extract(spec)``, which
returns a plain ``torch.nn`` module holding copies of the same slices (``active_weights`` is the one
place the slicing is written). Concatenated inputs are described by *segments*: an op built for
``in_segments=(256, 128)`` and called with ``(64, 32)`` reads columns ``[0:64]`` and ``[256:288]``,
so every subnet sees exactly the weights it has inside the supernet.
"""

from sned.supernet.ops.attention import ElasticRelativePositionBias, attention
from sned.supernet.ops.conv import ElasticConv3d
from sned.supernet.ops.linear import ElasticLinear
from sned.supernet.ops.norm import ElasticGroupNorm
from sned.supernet.ops.slicing import gather_segments

__all__ = ["ElasticConv3d", "ElasticGroupNorm", "ElasticLinear", "ElasticRelativePositionBias", "attention",
           "gather_segments"]
