"""A fault-injecting HTTP proxy on 127.0.0.1 in front of fake-gcs-server or moto (tests only).

Point ``STORAGE_EMULATOR_HOST`` (GCS) or ``AWS_ENDPOINT_URL_S3`` (S3) at ``FaultProxy.url``
(``storage_through`` does both) and every storage call goes through it:

- random faults: with probability ``rate`` a request is answered 503 or 429 by the proxy, or its
  connection is reset, before it reaches the server (seeded, so a failing run can be replayed);
  S3 requests get S3's own error body (503 ``SlowDown``), GCS requests a JSON one;
- lost responses: a request for which ``lose_response(method, path, body, headers)`` is true reaches the
  server, which acts on it, and then the client's connection is reset instead of the answer
  being sent. Each distinct request (method, path with query, body; a multipart body's random
  boundary does not count, since a client that rebuilds the upload draws a new one) loses its
  response once, so the client's retry of the same request gets through: the case of a write that succeeded but
  whose success the client never heard of.

It is bounded: it stops by itself after ``max_seconds`` (a hung test then fails instead of
hanging), and as a context manager it stops on exit.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http.client
import os
import random
import re
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
Headers = dict[str, str]  # lower-case names


def _is_gcs(path: str) -> bool:
    return path.startswith(("/storage/v1/", "/upload/", "/download/"))


def conditional_write(
    method: str, path: str, body: bytes = b"", headers: Headers | None = None
) -> bool:
    """Writes with a precondition: create-only and compare-and-swap, on either backend.

    GCS: uploads with ``ifGenerationMatch`` (``=0``: create-only). S3: ``PUT`` object with
    ``If-None-Match: *`` or ``If-Match: <etag>``, and a multipart completion (``POST ?uploadId=``)
    with ``If-None-Match: *``.
    """
    if _is_gcs(path):
        return (
            method in ("POST", "PUT")
            and path.startswith("/upload/")
            and "ifGenerationMatch=" in path
        )
    headers = headers or {}
    conditional = "if-none-match" in headers or "if-match" in headers
    if method == "PUT":
        return conditional and "partNumber=" not in path
    return method == "POST" and "uploadId=" in path and conditional


def conditional_write_of(suffix: str) -> Callable[[str, str, bytes, Headers], bool]:
    """Conditional writes of objects whose name ends with ``suffix`` (GCS: in the upload's body;
    S3: in the path)."""
    name = re.compile(rb'"name": ?"[^"]*' + re.escape(suffix.encode()) + rb'"')

    def match(method: str, path: str, body: bytes, headers: Headers) -> bool:
        if not conditional_write(method, path, body, headers):
            return False
        if _is_gcs(path):
            return name.search(body) is not None
        return urllib.parse.unquote(path.partition("?")[0]).endswith("/" + suffix)

    return match


class FaultProxy:
    """The proxy; use as ``with FaultProxy(upstream, rate=0.1) as proxy: ... proxy.url``.

    Attributes:
        counts: How many requests got each treatment ("forwarded", "503", "429", "reset", "lost").
        lost: ``"METHOD path"`` of every request whose response was lost, in order.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        lose_response: Callable[[str, str, bytes, Headers], bool] | None = None,
        max_seconds: float = 120.0,
    ) -> None:
        target = urllib.parse.urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.rate = rate
        self.lose_response = lose_response
        self.max_seconds = max_seconds
        self.counts: collections.Counter[str] = collections.Counter()
        self.lost: list[str] = []
        self._random = random.Random(seed)
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._timer = threading.Timer(max_seconds, self.stop)

    @property
    def url(self) -> str:
        """The proxy's base URL, for ``STORAGE_EMULATOR_HOST``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (idempotent); clients then get connection errors."""
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def decide(self, method: str, path: str, body: bytes, headers: Headers | None = None) -> str:
        """The treatment of one request: "forward", "lose", "503", "429" or "reset"."""
        with self._lock:
            if self.lose_response and self.lose_response(method, path, body, headers or {}):
                key = (method, path, hashlib.sha256(_without_boundary(body, headers)).hexdigest())
                if key not in self._seen:
                    self._seen.add(key)
                    self.lost.append(f"{method} {path}")
                    return "lose"
            if self._random.random() < self.rate:
                return self._random.choice(["503", "429", "reset"])
            return "forward"


@contextlib.contextmanager
def storage_through(proxy: FaultProxy) -> Iterator[FaultProxy]:
    """Send the storage layer's requests (both backends) through ``proxy`` (started here)."""
    from catsdogs.components.common import gcs, s3

    names = ("STORAGE_EMULATOR_HOST", "AWS_ENDPOINT_URL_S3")
    old = {name: os.environ.get(name) for name in names}
    with proxy:
        os.environ.update(dict.fromkeys(names, proxy.url))
        gcs.reset_client()
        s3.reset_client()
        try:
            yield proxy
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            gcs.reset_client()
            s3.reset_client()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._proxy()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET  # noqa: N815

    def _proxy(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            self._answer(501, b"chunked request bodies are not supported by the fault proxy")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        treatment = proxy.decide(self.command, self.path, body, headers)
        with proxy._lock:
            proxy.counts["forwarded" if treatment == "forward" else treatment] += 1
        if treatment == "reset":
            self._reset()
            return
        if treatment in ("503", "429") and _is_gcs(self.path):
            self._answer(int(treatment), b'{"error": {"message": "injected by the fault proxy"}}')
            return
        if treatment in ("503", "429"):  # S3's throttling answer (botocore retries both codes)
            error = b"<Error><Code>SlowDown</Code><Message>injected by the fault proxy</Message></Error>"
            self._answer(int(treatment), error, "application/xml")
            return
        status, headers, data = self._forward(proxy.upstream, body)
        if treatment == "lose":
            self._reset()  # the server acted on the request; the client never hears of it
            return
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, upstream: tuple[str, int], body: bytes) -> tuple[int, Any, bytes]:
        connection = http.client.HTTPConnection(*upstream, timeout=60)
        try:
            # Expect: 100-continue was answered here (http.server) and the body read already.
            skip = HOP_BY_HOP | {"expect"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _answer(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close the client's connection with a TCP reset, sending nothing."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


def _without_boundary(body: bytes, headers: Headers | None) -> bytes:
    """``body`` with its multipart boundary (from the Content-Type header) taken out."""
    content_type = str(
        (headers or {}).get("Content-Type") or (headers or {}).get("content-type") or ""
    )
    if "boundary=" not in content_type:
        return body
    boundary = content_type.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"')
    return body.replace(boundary.encode(), b"") if boundary else body
