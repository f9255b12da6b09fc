"""What the model server refuses before any handler runs: oversized bodies, however framed.

``BodyLimit`` is a plain ASGI middleware: it refuses a ``Content-Length`` over the limit at once
and, for every body (``Transfer-Encoding: chunked`` included), counts the bytes as the app reads
them and answers 413 as soon as the count passes the limit, so a request never holds more than
the limit plus one chunk in memory. It also refuses the Open Inference Protocol's binary data
extension (``Inference-Header-Content-Length``): KServe 0.21 decodes binary ``BYTES`` elements as
UTF-8 text, which no JPEG survives, so the server does not promise it (send base64 in JSON).
"""

from __future__ import annotations

import json
from typing import Any

BINARY_HEADER = b"inference-header-content-length"


class _TooLarge(Exception):
    """The body passed the limit while the app was reading it."""


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters (ANSI escapes, newlines) escaped, cut at ``limit``."""
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413) and binary-extension requests (400)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: str) -> str:
        return (
            f"Request body of {size} bytes; the limit is {self.limit}. Send fewer or smaller "
            "images per request."
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the app with a byte-counting ``receive``; answer 413 when it passes the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if BINARY_HEADER in headers:
            await _answer(
                send,
                400,
                "The binary data extension (Inference-Header-Content-Length) is not supported: "
                "send image_bytes as base64 strings in a JSON body.",
            )
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _answer(send, 413, self._too_large(printable(length.decode("latin-1"))))
            return
        received = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _answer(send, 413, self._too_large(f"more than {self.limit}"))
