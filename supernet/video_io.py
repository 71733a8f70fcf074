"""Reading and writing video files: PyAV writes (mp4, libx264 / mpeg4), decord reads.

Frames are ``uint8`` arrays of shape ``(f, h, w, 3)``. Torch-free.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write ``(f, h, w, 3)`` uint8 frames to ``path`` (.mp4 or .gif), atomically (temp file + rename)."""
    import av  # PyAV; decord cannot write

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (f, h, w, 3), got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        fd, tmp = tempfile.mkstemp(suffix=".gif", dir=path.parent)
        os.close(fd)
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        os.replace(tmp, path)
        return path
    fd, tmp = tempfile.mkstemp(suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv444p"  # no chroma subsampling: small frames keep their colours
            stream.options = {"crf": "10", "preset": "veryfast"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_video(path: str | Path, num_threads: int = 1) -> np.ndarray:
    """All frames of a video as ``(f, h, w, 3)`` uint8 (decord). Raises ``RuntimeError`` on a corrupt file."""
    import decord

    reader = decord.VideoReader(str(path), num_threads=num_threads)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def list_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (recursive, sorted; UCF-101 class folders work)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
