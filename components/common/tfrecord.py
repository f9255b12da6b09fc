"""TFRecord files without TensorFlow: the ``tf.train.Example`` encoding, the framing, a count.

``records.write_shard`` writes shards with these, so preparing a dataset never imports TensorFlow,
a full disk is a plain ``OSError`` and the same records always give the same bytes; the test suite
checks the bytes against TensorFlow's own writer.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import google_crc32c


def example(image: bytes, label: int, ident: str) -> bytes:
    """One record as a serialized ``tf.train.Example`` (features image, label, id).

    The bytes are those of protobuf's deterministic serialization (map keys sorted): ``image`` and
    ``id`` are one-value ``BytesList`` features, ``label`` a one-value (packed) ``Int64List``.
    """
    features = {
        "id": _field(1, _field(1, ident.encode("utf-8"))),  # Feature.bytes_list
        "image": _field(1, _field(1, image)),
        "label": _field(3, _field(1, _varint(label))),  # Feature.int64_list, packed
    }
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, value))
        for key, value in sorted(features.items())
    )
    return _field(1, entries)  # Example.features


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement)
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked crc32c, the data, its masked crc32c (little endian)."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _masked_crc(length))
        + data
        + struct.pack("<I", _masked_crc(data))
    )


def count_records(path: str | Path) -> int | None:
    """How many whole TFRecords a local file holds; None when one is cut short or its header is bad.

    Only the headers are read (the sha256 in the manifest covers the content).
    """
    size = os.path.getsize(path)
    count = offset = 0
    with open(path, "rb") as handle:
        while offset < size:
            header = handle.read(12)
            if len(header) < 12:
                return None
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                return None
            offset += 12 + length + 4
            if offset > size:
                return None
            handle.seek(offset)
            count += 1
    return count


def digest_and_count(path: str | Path) -> tuple[str, int | None]:
    """The sha256 of a local file and how many whole TFRecords it holds, in one read.

    The count is None when a record is cut short or a header's CRC is bad (as ``count_records``).
    """
    digest = hashlib.sha256()
    count, header_at, offset, partial, whole = 0, 0, 0, b"", True
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            block_start, offset = offset, offset + len(block)
            while whole and header_at + len(partial) < offset:
                start = header_at + len(partial) - block_start
                partial += block[start : start + 12 - len(partial)]
                if len(partial) < 12:
                    break  # the header goes on in the next block
                (length,) = struct.unpack("<Q", partial[:8])
                whole = struct.unpack("<I", partial[8:])[0] == _masked_crc(partial[:8])
                header_at, partial = header_at + 12 + length + 4, b""
                count += whole
    whole = whole and not partial and header_at == offset
    return digest.hexdigest(), count if whole else None
