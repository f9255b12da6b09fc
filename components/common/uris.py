"""Where a location lives: local path, ``gs://bucket/prefix`` or ``s3://bucket/prefix``.

Pure string helpers, re-exported by ``storage`` (callers use ``storage.is_remote`` etc.).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from catsdogs.components.common.errors import StorageError
from catsdogs.components.common.gcs import GCS_SCHEME, split_gcs
from catsdogs.components.common.s3_client import S3_SCHEME, split_s3

REMOTE_SCHEMES = (GCS_SCHEME, S3_SCHEME)


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names object storage (gs:// or s3://) rather than a local path."""
    return str(uri).startswith(REMOTE_SCHEMES)


def split_remote(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/prefix`` or ``s3://bucket/prefix`` into ``("bucket", "prefix")``."""
    return split_gcs(uri) if uri.startswith(GCS_SCHEME) else split_s3(uri)


def names_no_bucket(uri: str) -> bool:
    """Whether ``uri`` is a gs:// or s3:// URI without a bucket name (``gs://``, ``s3:///x``)."""
    scheme = next((s for s in REMOTE_SCHEMES if uri.startswith(s)), None)
    return scheme is not None and not uri[len(scheme) :].split("/")[0]


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<bucket>[^/]*)")


def check_uri(uri: str | os.PathLike[str]) -> str:
    """``uri`` as a string, refused when it is blank or names no bucket.

    Every function of ``storage`` passes its locations through here: an empty location would
    otherwise mean the current folder, and ``gs://`` alone a bucket named "".

    Raises:
        StorageError: ``uri`` is empty or blank, or a ``scheme://`` URI without a bucket.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise StorageError(
            f"A location is empty ({text!r}): expected a local path or a gs:// or s3:// "
            "bucket/prefix URI (an empty one would mean the current folder). Give the option a "
            "path or URI."
        )
    match = _SCHEME.match(text)
    if match and not match.group("bucket"):
        raise StorageError(
            f"{text!r} names no bucket: expected {text.split('://')[0]}://BUCKET/prefix."
        )
    return text


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or a gs:// / s3:// URI (``base`` must not be blank)."""
    base = check_uri(base)
    if is_remote(base):
        out = str(base).rstrip("/")
        for part in parts:
            out += "/" + part.strip("/")
        return out
    return str(Path(base, *parts))
