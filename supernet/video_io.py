"""Reading and writing video files: PyAV writes (mp4, libx264 / mpeg4), decord reads.

Frames are ``uint8`` arrays of shape ``(f, h, w, 3)``. Torch-free. Every read of a user's video
goes through :func:`native_stderr_captured`, so decord's and FFmpeg's own C-level error lines never
reach the terminal: the caller's one-line message (which names the file) is the only one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sned.supernet.base.files import atomic_path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
NATIVE_STDERR_LIMIT = 4096  # bytes of captured native output kept for the debug log

logger = logging.getLogger(__name__)
# fd 2 belongs to the whole process: one capture at a time (re-entrant, so nested reads work).
_stderr_lock = threading.RLock()


def _fresh_lock_after_fork() -> None:
    """A forked child (a DataLoader worker) gets its own lock: one held by a parent thread would never be released."""
    global _stderr_lock
    _stderr_lock = threading.RLock()


os.register_at_fork(after_in_child=_fresh_lock_after_fork)


@contextlib.contextmanager
def native_stderr_captured(what: str = "") -> Iterator[None]:
    """Redirect file descriptor 2 to a temporary file while the block runs, then restore it.

    decord's C++ layer and FFmpeg write their own lines (``video_reader.cc:83: ERROR opening ...``)
    straight to fd 2, below Python's ``sys.stderr``, so only a file-descriptor swap silences them.
    What they wrote is logged at DEBUG level (``sned.supernet.video_io``), never printed. fd 2 is
    restored on every exit, exceptions included.

    Threads: captures are serialised by a process-wide lock; while one runs, *anything* written to
    fd 2 by another thread (a log line, a progress bar) also lands in the capture, so keep the
    block to the native call itself.

    Args:
        what: names the file in the debug log.
    """
    with _stderr_lock:
        with contextlib.suppress(AttributeError, ValueError, OSError):  # sys.stderr may be None or closed
            sys.stderr.flush()
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(saved, 2)
                    sink.seek(0)
                    captured = sink.read(NATIVE_STDERR_LIMIT).decode("utf-8", "replace").strip()
                    if captured:
                        logger.debug("native stderr while reading %s: %s", what or "a video", captured)
        finally:
            os.close(saved)


def data_folder_hash(data_dir: str | Path) -> str:
    """sha256 of a folder's sorted relative video paths and byte sizes (one ``path<TAB>size`` line each).

    A cheap fingerprint of a dataset (no video is read): the feature cards of ``sned features`` record it.
    """
    import hashlib

    root = Path(data_dir)
    digest = hashlib.sha256()
    for path in list_videos(root):
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


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
        with atomic_path(path) as tmp:
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return path
    with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:  # PyAV picks the container by the suffix
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv444p"  # no chroma subsampling: small frames keep their colours
            stream.options = {"crf": "10", "preset": "veryfast"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def read_frames(path: str | Path, indices: list[int] | None = None) -> np.ndarray:
    """Frames ``indices`` (default: all) of a video as ``(f, h, w, 3)`` uint8: decord, or PyAV where decord fails.

    decord 0.6 cannot return frames of some widths (8, 16, 24, 48, 72 px among multiples of 8 up to
    256: a buffer-size check fails, dmlc/decord#336), so those are decoded with PyAV instead. The
    reader is opened here, in the calling process, every time (decord readers opened in a parent
    hang in forked DataLoader workers). Raises ``RuntimeError`` on a file neither can read.
    """
    import av
    import decord

    try:
        with native_stderr_captured(str(path)):
            reader = decord.VideoReader(str(path), num_threads=1)
            return reader.get_batch(list(range(len(reader))) if indices is None else indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as decord_error:
        found: dict[int, np.ndarray] = {}
        last = None if indices is None else max(indices)
        try:
            with native_stderr_captured(str(path)), av.open(str(path)) as container:
                for position, frame in enumerate(container.decode(video=0)):
                    if indices is None or position in indices:
                        found[position] = frame.to_ndarray(format="rgb24")
                    if last is not None and position >= last:
                        break
        except (av.FFmpegError, OSError, ValueError) as av_error:
            raise RuntimeError(f"cannot read {path}: not a video decord or PyAV can decode "
                               f"({_first_line(av_error)})") from av_error
        wanted = sorted(found) if indices is None else indices
        if not found or any(i not in found for i in wanted):
            raise RuntimeError(f"cannot read frames of {path}: decord: {_first_line(decord_error)}; "
                               f"PyAV decoded {len(found)} frames") from decord_error
        return np.stack([found[i] for i in wanted])


def _first_line(error: BaseException) -> str:
    """An error's reason in one short line (an OSError's or FFmpegError's strerror, without the file name)."""
    strerror = getattr(error, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def count_frames(path: str | Path) -> int | None:
    """Frames of a video as decord counts them, or None when decord cannot open it (nothing printed).

    The reader is closed before returning: a decord reader kept in a parent process hangs in
    forked ``DataLoader`` workers.
    """
    import decord

    try:
        with native_stderr_captured(str(path)):
            reader = decord.VideoReader(str(path), num_threads=1)
            count = len(reader)
            del reader
        return count
    except (decord.DECORDError, RuntimeError, OSError, ValueError):  # opening errors are RuntimeErrors
        return None


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video as ``(f, h, w, 3)`` uint8 (see :func:`read_frames`)."""
    return read_frames(path)


def list_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (recursive, sorted; UCF-101 class folders work)."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
