"""Validate and re-encode every image, in worker processes on all cores.

Per image: a Pillow header check against ``Image.MAX_IMAGE_PIXELS`` (decompression bombs are
quarantined, never decoded), JPEG draft mode when the image is downscaled anyway, a full decode,
EXIF orientation, RGB, a downscale so the longer side is at most ``max_side``, and a JPEG
re-encode, except for a file that is already what the re-encode would make the same way (a baseline
RGB JPEG no larger than ``max_side`` that needs no rotation): it is stored as it is, less its
metadata (``jpeg.strip_metadata``). JPEGs are decoded strictly through libjpeg-turbo
(``jpeg.SimpleJpeg``: the same pixels as Pillow's decode, and libjpeg's corrupt-data warnings
quarantine the file); every other format, and EXIF orientation, stays with Pillow. A failure comes
back as a quarantine reason. Each worker appends the JPEGs to its own spool file, so only offsets
travel back to the parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from catsdogs.components.common import images
from catsdogs.components.common.errors import ImageError
from catsdogs.components.prepare_dataset import jpeg

# The draft (DCT-domain) downscale may land this much under max_side, which saves a resample.
DRAFT_TOLERANCE = 0.9
# A file kept as it is may take at most this many bytes per pixel (more is metadata or junk).
KEEP_MAX_BYTES_PER_PIXEL = 2
_EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 means "normal"
# The JPEG decoder (and encoder) of the JPEG path; None decodes JPEGs with Pillow's load() too.
DEFAULT_CODEC: jpeg.JpegCodec | None = jpeg.SimpleJpeg()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of validating one image."""

    ok: bool
    reason: str  # why the image is quarantined; "" when ok
    original: tuple[int, int]  # (width, height) from the header, (0, 0) when unknown
    encoded: tuple[int, int]
    nbytes: int
    spool: str = ""  # file holding the re-encoded JPEG (see validate_all), at ``offset``
    offset: int = 0
    kept: bool = False  # the original file's bytes were stored, not a re-encode

    def read(self) -> bytes:
        """The re-encoded JPEG bytes of a valid image."""
        with open(self.spool, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.nbytes)


def _failed(reason: str, original: tuple[int, int] = (0, 0)) -> tuple[Outcome, bytes]:
    return Outcome(False, reason, original, (0, 0), 0), b""


def validate_image(
    path: str,
    max_side: int,
    quality: int,
    encode: bool = True,
    codec: jpeg.JpegCodec | None = DEFAULT_CODEC,
) -> tuple[Outcome, bytes]:
    """Fully decode one image and re-encode it; a failure comes back as a quarantine reason.

    Args:
        path: Local file.
        max_side: Longest side of the re-encoded image (smaller images are not enlarged).
        quality: JPEG quality of the re-encoded image.
        encode: False stops after the checks and the decode (the benchmark times that part).
        codec: Decodes (strictly) and re-encodes JPEG input; None: Pillow's ``load()``, which
            does not check the data (the path before issue 27, which the benchmark compares).

    Returns:
        The outcome and the JPEG bytes (empty when the image is quarantined): the file's own bytes
        less its metadata when ``keeps_original`` says so, a re-encode otherwise.
    """
    from PIL import Image, UnidentifiedImageError

    original = (0, 0)
    try:
        if os.path.getsize(path) == 0:
            return _failed("empty file (0 bytes)")
        limit = Image.MAX_IMAGE_PIXELS
        with _header_only_bomb_check(Image):
            opened = Image.open(path)  # reads the header only
        with opened as image:
            original = image.size
            width, height = original
            if limit and width * height > limit:
                return _failed(_bomb_reason(width, height, limit), original)
            is_jpeg = image.format == "JPEG"
            data = b""
            if is_jpeg and (codec is not None or encode):  # not before: a huge non-image
                with open(path, "rb") as handle:
                    data = handle.read()
            stripped = (
                jpeg.strip_metadata(data)
                if encode and is_jpeg and max(original) <= max_side
                else None
            )
            keep = stripped is not None and keeps_original(image, max_side, len(stripped))
            scale = max_side / max(width, height)
            if is_jpeg and scale < 1:
                # DCT-domain downscale: Pillow picks the largest 1/2, 1/4, 1/8 still >= this size.
                image.draft(
                    None,
                    (
                        max(1, int(width * scale * DRAFT_TOLERANCE)),
                        max(1, int(height * scale * DRAFT_TOLERANCE)),
                    ),
                )
            rgb = None
            if is_jpeg and codec is not None:
                try:
                    pixels = codec.decode(stripped if keep and stripped else data, image.size)
                    if image.mode in ("RGB", "L"):  # CMYK, YCCK: checked here, Pillow's colors
                        rgb = _oriented(_wrap(pixels), image)
                except jpeg.CorruptJpeg as error:
                    return _failed(jpeg.corrupt_reason(str(error)), original)
                except jpeg.Unsupported:
                    pass  # Pillow decides
            if rgb is None:
                rgb = _pillow_decode(image)
        if not encode:
            return Outcome(True, "", original, rgb.size, 0), b""
        if keep and stripped:
            return Outcome(True, "", original, original, len(stripped), kept=True), stripped
        if max(rgb.size) > max_side:
            scale = max_side / max(rgb.size)
            size = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
            # Area averaging (like OpenCV's INTER_AREA), the same filter the DCT scaling applies.
            rgb = rgb.resize(size, Image.Resampling.BOX)
        if is_jpeg and codec is not None:
            encoded = codec.encode(rgb, quality)
        else:
            encoded = jpeg.pillow_encode(rgb, quality)
    except Image.DecompressionBombError:
        width, height = original
        return _failed(_bomb_reason(width, height, Image.MAX_IMAGE_PIXELS or 0), original)
    except ImageError as error:
        return _failed(str(error), original)
    except UnidentifiedImageError:
        return _failed("not an image: Pillow cannot identify the file format", original)
    except Exception as error:  # noqa: BLE001 - any decode failure quarantines the file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "truncated" in message.lower():
            # Pillow words it differently by where the data ends ("image file is truncated (2
            # bytes not processed)", "Truncated File Read"): one reason, the detail in brackets.
            return _failed(f"cannot decode: image file is truncated ({message})", original)
        return _failed(f"cannot decode: {message}", original)
    return Outcome(True, "", original, rgb.size, len(encoded)), encoded


def _pillow_decode(image: Any) -> Any:
    """Decode an opened (and maybe drafted) image with Pillow: EXIF orientation, 8-bit RGB."""
    from PIL import ImageOps

    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    return images.to_rgb(image)  # 16-bit scaled; 32-bit and float refused


def _wrap(pixels: Any) -> Any:
    from PIL import Image

    return jpeg.rgbx_image(pixels) if pixels.shape[2] == 4 else Image.fromarray(pixels)


def _oriented(decoded: Any, header: Any) -> Any:
    """``decoded`` turned as the EXIF (or XMP) orientation of ``header`` says, read by Pillow.

    The same transposes as ``ImageOps.exif_transpose``, which needs the image's own EXIF: the
    pixels here come from another decoder.
    """
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(header.getexif().get(_EXIF_ORIENTATION, 1))
    return decoded if method is None else decoded.transpose(method)


def keeps_original(image: Any, max_side: int, nbytes: int) -> bool:
    """Whether a decoded image's file can be stored as it is instead of re-encoded.

    True for a baseline (not progressive) RGB JPEG whose longer side is at most ``max_side``,
    with no EXIF orientation other than "normal" and at most ``KEEP_MAX_BYTES_PER_PIXEL`` bytes a
    pixel: the re-encode would only cost time (and a little quality).

    Args:
        image: The opened Pillow image (its header is enough), before any draft or transpose.
        max_side: The longest side a stored image may have.
        nbytes: Size of the JPEG as it would be stored (``jpeg.strip_metadata``), in bytes.
    """
    width, height = image.size
    return (
        image.format == "JPEG"
        and image.mode == "RGB"
        and not image.info.get("progressive")
        and not image.info.get("progression")
        and max(width, height) <= max_side
        and image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        and nbytes <= width * height * KEEP_MAX_BYTES_PER_PIXEL
    )


@contextlib.contextmanager
def _header_only_bomb_check(pil_image: Any) -> Iterator[None]:
    """Let ``Image.open`` read any header, so the caller checks (and reports) the size itself."""
    limit = pil_image.MAX_IMAGE_PIXELS
    pil_image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        pil_image.MAX_IMAGE_PIXELS = limit


def _bomb_reason(width: int, height: int, limit: int) -> str:
    declared = f"{width}x{height} = {width * height:,} pixels" if width else "too many pixels"
    return f"decompression bomb: header declares {declared} (limit {limit:,}); not decoded"


_SPOOLS: dict[str, Any] = {}  # spool folder -> this process's append-only file in it


def _validate_to_spool(task: tuple[str, str, int, int, bool, jpeg.JpegCodec | None]) -> Outcome:
    """Validate one image and append its JPEG to this process's spool file.

    One append-only file per process (not a file per image: creating files is slow on some file
    systems); unbuffered, so nothing is lost when a pool worker exits.
    """
    path, spool, max_side, quality, encode, codec = task
    outcome, data = validate_image(path, max_side, quality, encode, codec)
    if not outcome.ok or not encode:
        return outcome
    handle = _SPOOLS.get(spool)
    if handle is None:
        handle = _SPOOLS[spool] = open(  # noqa: SIM115 - closed by validate_all / process exit
            os.path.join(spool, f"{os.getpid()}.bin"), "ab", buffering=0
        )
    offset = handle.tell()
    handle.write(data)
    return dataclasses.replace(outcome, spool=handle.name, offset=offset)


def worker_count(requested: int) -> int:
    """The number of validation processes: ``requested``, or the usable cores when it is 0."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _process_context() -> Any:
    """The start method for the validation workers.

    fork when this process runs no other threads (cheapest, and the caller's script needs no
    ``__main__`` guard); forkserver when it does (TensorFlow, gRPC...), where a fork could copy a
    lock another thread holds. tqdm's own monitor thread does not count: it only sleeps.
    """
    import multiprocessing
    import threading

    if (
        all(t is threading.main_thread() or t.name == "tqdm_monitor" for t in threading.enumerate())
        and "tensorflow" not in sys.modules
        and "fork" in multiprocessing.get_all_start_methods()
    ):
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "PIL.Image", "PIL.ImageOps", "simplejpeg"])
    return context


def validate_all(
    paths: list[str],
    spool: Path,
    max_side: int,
    quality: int,
    workers: int = 0,
    progress: bool = True,
    encode: bool = True,
    codec: jpeg.JpegCodec | None = DEFAULT_CODEC,
) -> list[Outcome]:
    """Validate ``paths`` on ``workers`` processes (0: all cores); valid JPEGs land in ``spool``.

    With ``encode=False`` only the checks and the decode run (nothing is spooled). ``codec``: see
    ``validate_image``.

    Returns:
        One outcome per path, in order; ``outcome.read()`` gives a valid image's JPEG bytes.
    """
    from tqdm import tqdm

    tasks = [(p, str(spool), max_side, quality, encode, codec) for p in paths]
    count = worker_count(workers)
    bar = tqdm(
        total=len(tasks),
        desc="Validating",
        unit="img",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 15,  # a log line every 15 s in pipelines
    )
    outcomes: list[Outcome] = []
    with bar:
        if count == 1 or len(tasks) < 2:
            try:
                for task in tasks:
                    outcomes.append(_validate_to_spool(task))
                    bar.update()
            finally:
                handle = _SPOOLS.pop(str(spool), None)
                if handle is not None:
                    handle.close()
            return outcomes
        context = _process_context()
        chunk = max(1, min(32, len(tasks) // (count * 8)))
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
            for outcome in pool.map(_validate_to_spool, tasks, chunksize=chunk):
                outcomes.append(outcome)
                bar.update()
    return outcomes
