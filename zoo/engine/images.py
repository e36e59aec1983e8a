"""Images in: PIL images, file paths or encoded bytes, checked before any pixel is decoded.

A multimodal model (CLIP family) embeds images into its text space. Whatever the caller hands in
gets one digest first, which keys the vector cache (``IMAGE_KEY`` + the sha256 of the encoded
bytes, or of the mode, size and pixels of an image given decoded), so the same picture is
embedded, and decoded, once however often it is sent; then one RGB ``PIL.Image`` if it is new.

Encoded input is opened lazily: Pillow reads only the header, and the format and the pixel count
are checked against the limits before ``load()`` decodes anything. So a decompression bomb (a
small file declaring 50,000 x 50,000 pixels), a truncated file or something that is not an image
costs a header read and gets ``InvalidInput`` naming its index, never a stall or a crash.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import InvalidInput, require

__all__ = ["IMAGE_KEY", "FORMATS", "DEFAULT_MAX_PIXELS", "MAX_FILE_BYTES", "PixelBudget", "PIXELS", "image_keys",
           "open_image", "declared_pixels", "is_image_key", "pixel_values", "embed_in_batches"]

# Like TOKEN_KEY: a lone surrogate no valid text contains, so an image's key never equals a text's
IMAGE_KEY = "\udc01img:"
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 40_000_000  # a 6,000 x 6,000 photo passes; Pillow's own bomb warning starts at 89 M
MAX_FILE_BYTES = 256 * 1024 * 1024  # an image file path is read only up to this (a 40 MP TIFF is ~120 MB)
# decoded pixels held at once by this process, over every call and thread (each RGB pixel is 3 bytes, and a
# conversion or resize copies it once more): 96 M pixels is under 600 MB however many requests arrive
PROCESS_PIXELS = int(os.environ.get("ZOO_IMAGE_PIXEL_BUDGET", 96_000_000))


class PixelBudget:
    """Decoded pixels a process holds at once, shared by every caller: each batch of images takes its
    declared pixels before decoding and gives them back once they are pixel values (small, fixed size).
    A batch larger than the whole budget waits until it has the budget to itself, so it cannot deadlock."""

    def __init__(self, capacity: int):
        self.capacity, self.free = capacity, capacity
        self._cond = threading.Condition()

    def batches(self, sizes: list[int], batch_size: int) -> list[tuple[int, int]]:
        """(start, stop) runs of ``sizes``: at most ``batch_size`` images and, where more than one, at most a
        quarter of the budget, so four callers can decode at once and no batch needs the whole budget."""
        runs, start, pixels = [], 0, 0
        for i, n in enumerate(sizes):
            if i > start and (i - start >= batch_size or pixels + n > self.capacity // 4):
                runs.append((start, i))
                start, pixels = i, 0
            pixels += n
        if sizes:
            runs.append((start, len(sizes)))
        return runs

    def take(self, pixels: int) -> int:
        want = min(pixels, self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.free >= want)
            self.free -= want
        return want

    def give(self, pixels: int) -> None:
        with self._cond:
            self.free += pixels
            self._cond.notify_all()


PIXELS = PixelBudget(PROCESS_PIXELS)


def is_image_key(key: str) -> bool:
    return key.startswith(IMAGE_KEY)


def image_keys(images: Any) -> list[tuple[str, Any]]:
    """(cache key, source) per input: the source is a PIL image or the encoded bytes, not yet decoded,
    so a caller can look its keys up first and decode only what the cache lacks (the same bytes
    were a valid image when they were cached)."""
    pil = require("PIL.Image", "torch")
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or isinstance(images, pil.Image):
        images = [images]
    if not isinstance(images, Sequence):
        raise InvalidInput(f"images must be a list of PIL images, file paths or bytes, not {type(images).__name__}")
    return [_source(pil, item, i) for i, item in enumerate(images)]


def open_image(source, index: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """One source of ``image_keys`` as an RGB image, its header checked first."""
    pil = require("PIL.Image", "torch")
    if isinstance(source, pil.Image):
        _check_size(source.size, index, max_pixels)
        return source.convert("RGB")
    return decode(source, index, max_pixels)


def _source(pil, item, index: int) -> tuple[str, Any]:
    if isinstance(item, pil.Image):
        return IMAGE_KEY + hashlib.sha256(f"{item.mode}:{item.size}:".encode() + item.tobytes()).hexdigest(), item
    if isinstance(item, (str, os.PathLike)):
        data = _read_file(Path(item), index)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        raise InvalidInput(f"image at index {index} is {type(item).__name__}; pass a PIL image, a file path or bytes",
                           param=f"input[{index}]", code="invalid_type")
    return IMAGE_KEY + hashlib.sha256(data).hexdigest(), data


def _read_file(path: Path, index: int) -> bytes:
    """An image file's bytes, once it is known to be a regular file of a readable size: a device, a FIFO
    or /proc entry (``/dev/zero`` once read forever) is refused before any read, and a file that grows
    past its size while read is cut at ``MAX_FILE_BYTES``."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InvalidInput(f"image at index {index}: {path} is not a regular file", param=f"input[{index}]")
            if st.st_size > MAX_FILE_BYTES:
                raise InvalidInput(f"image at index {index}: {path} is {st.st_size:,} bytes, more than the "
                                   f"{MAX_FILE_BYTES:,} an image file may have", param=f"input[{index}]")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"image at index {index}: cannot read {path} ({exc.strerror or exc})",
                           param=f"input[{index}]") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"image at index {index}: {path} grew past {MAX_FILE_BYTES:,} bytes while read",
                           param=f"input[{index}]")
    return data


def declared_pixels(source) -> int:
    """The pixels a source will decode to, from its header only (0 when the header cannot be read: the
    decode that follows refuses it with the reason)."""
    pil = require("PIL.Image", "torch")
    if isinstance(source, pil.Image):
        return source.size[0] * source.size[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)
            width, height = pil.open(io.BytesIO(source)).size
        return max(0, width) * max(0, height)
    except Exception:  # noqa: BLE001 - any unreadable header: decode() names the problem
        return 0


def decode(data: bytes, index: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """One encoded image as RGB, after its header passed the format and pixel checks."""
    pil = require("PIL.Image", "torch")
    try:
        with warnings.catch_warnings():  # the size is ours to judge, below
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)
            image = pil.open(io.BytesIO(data))  # reads the header only
    except pil.DecompressionBombError:  # Pillow's own limit (twice MAX_IMAGE_PIXELS), checked at open
        raise InvalidInput(f"image at index {index} declares more pixels than Pillow opens, more than the "
                           f"{max_pixels:,} allowed; scale it down first", param=f"input[{index}]") from None
    except (pil.UnidentifiedImageError, OSError, ValueError):
        raise InvalidInput(f"image at index {index} is not an image ({', '.join(FORMATS)} are read)",
                           param=f"input[{index}]") from None
    if image.format not in FORMATS:
        raise InvalidInput(f"image at index {index} is {image.format}; {', '.join(FORMATS)} are read",
                           param=f"input[{index}]")
    _check_size(image.size, index, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)
            image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, pil.DecompressionBombError):
        raise InvalidInput(f"image at index {index} is truncated or damaged; send the whole file",
                           param=f"input[{index}]") from None


def _check_size(size: tuple[int, int], index: int, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidInput(f"image at index {index} has no pixels ({width}x{height})", param=f"input[{index}]")
    if width * height > max_pixels:
        raise InvalidInput(f"image at index {index} is {width}x{height} pixels, more than the {max_pixels:,} "
                           "allowed; scale it down first", param=f"input[{index}]")


def pixel_values(images: list, pre: dict) -> "np.ndarray":
    """RGB images as a vision tower's ``pixel_values`` (n, 3, H, W), float32, with numpy and Pillow
    only, step for step as transformers' CLIPImageProcessor does it (so a lean runtime needs no
    torch): resize the shortest edge (Pillow, the recorded resampling, no reducing gap), centre
    crop, rescale in float64 then float32, normalise by the recorded mean and std."""
    import numpy as np

    mean = np.asarray(pre.get("image_mean", (0.0, 0.0, 0.0)), dtype=np.float32)
    std = np.asarray(pre.get("image_std", (1.0, 1.0, 1.0)), dtype=np.float32)
    out = []
    for image in images:
        if pre.get("do_convert_rgb", True):
            image = image.convert("RGB")
        if pre.get("do_resize", True):
            size = pre.get("size") or {}
            w, h = image.size
            if "shortest_edge" in size:
                short, long = (w, h) if w <= h else (h, w)
                new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
                new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            else:
                new_w, new_h = size["width"], size["height"]
            image = image.resize((new_w, new_h), resample=pre.get("resample", 3), reducing_gap=None)
        x = np.asarray(image)
        if pre.get("do_center_crop", False):
            crop = pre["crop_size"]
            ch, cw = crop["height"], crop["width"]
            top, left = (x.shape[0] - ch) // 2, (x.shape[1] - cw) // 2
            if top >= 0 and left >= 0:
                x = x[top:top + ch, left:left + cw]
            else:  # smaller than the crop: centred on zeros, as transformers pads
                canvas = np.zeros((max(ch, x.shape[0]), max(cw, x.shape[1]), 3), dtype=x.dtype)
                t, l = (canvas.shape[0] - x.shape[0]) // 2, (canvas.shape[1] - x.shape[1]) // 2
                canvas[t:t + x.shape[0], l:l + x.shape[1]] = x
                t, l = (canvas.shape[0] - ch) // 2, (canvas.shape[1] - cw) // 2
                x = canvas[t:t + ch, l:l + cw]
        x = (x.astype(np.float64) * pre.get("rescale_factor", 1 / 255)).astype(np.float32) \
            if pre.get("do_rescale", True) else x.astype(np.float32)
        if pre.get("do_normalize", True):
            x = (x - mean) / std
        out.append(x.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def embed_in_batches(images: list, batch_size: int, pre: dict, run_vision) -> "np.ndarray":
    """A vision tower's vectors of ``images``: ``run_vision(pixel_values)`` per batch of ``batch_size``."""
    import numpy as np

    parts = [np.asarray(run_vision(pixel_values(images[i:i + batch_size], pre)), dtype=np.float32)
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts)
