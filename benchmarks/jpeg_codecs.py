"""Benchmark-only JPEG codecs for prepare's validation (``validation.validate_image(codec=...)``).

``TurboJpeg``: PyTurboJPEG (ctypes over the system's libturbojpeg: no wheel bundles it; Debian's
``libturbojpeg0`` is libjpeg-turbo 2.1.5, which PyTurboJPEG 2.x refuses (it needs the TurboJPEG 3
API), so the pin is PyTurboJPEG 1.8.3). Strict like ``jpeg.SimpleJpeg``: libjpeg's warnings,
which PyTurboJPEG reports with ``warnings.warn``, become ``CorruptJpeg``/``Unsupported``; the
re-encode asks for the accurate DCT (``TJFLAG_ACCURATEDCT``), as Pillow uses.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
from catsdogs.components.prepare_dataset import jpeg

_HANDLE: dict[str, Any] = {}  # one TurboJPEG handle per process (ctypes handles do not pickle)


def turbojpeg_problem() -> str:
    """Why PyTurboJPEG cannot run here, or "" when it can."""
    try:
        _turbo()
    except ImportError:
        return "the pyturbojpeg package is not installed (pip install -e '.[dev]')"
    except (OSError, RuntimeError) as error:
        return (
            f"PyTurboJPEG finds no usable libturbojpeg ({str(error).splitlines()[0]}); "
            "install it with: apt-get install libturbojpeg0"
        )
    return ""


def _turbo() -> Any:
    if "turbo" not in _HANDLE:
        import turbojpeg

        _HANDLE["turbo"] = turbojpeg.TurboJPEG()
    return _HANDLE["turbo"]


@dataclasses.dataclass(frozen=True)
class TurboJpeg:
    """Strict decode and accurate-DCT encode through PyTurboJPEG."""

    name: str = "pyturbojpeg"

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray:
        import turbojpeg

        turbo = _turbo()
        width, height, _, _ = turbo.decode_header(data)
        factor = next(
            ((1, k) for k in (1, 2, 4, 8) if (-(-width // k), -(-height // k)) == size), None
        )
        if factor is None:
            raise jpeg.Unsupported(f"no 1/k scale gives {size} from {width}x{height}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pixels = turbo.decode(
                    data,
                    pixel_format=turbojpeg.TJPF_RGB,
                    scaling_factor=factor,
                    flags=turbojpeg.TJFLAG_ACCURATEDCT,
                )
            except OSError as error:
                raise jpeg.Unsupported(str(error)) from error
        if caught:
            message = str(caught[0].message)
            if message.startswith(jpeg.CORRUPT_WARNINGS):
                raise jpeg.CorruptJpeg(message)
            raise jpeg.Unsupported(message)
        return np.asarray(pixels)

    def encode(self, image: Any, quality: int) -> bytes:
        import turbojpeg

        return bytes(
            _turbo().encode(
                np.asarray(image),
                quality=quality,
                pixel_format=turbojpeg.TJPF_RGB,
                jpeg_subsample=turbojpeg.TJSAMP_420,
                flags=turbojpeg.TJFLAG_ACCURATEDCT,
            )
        )
