"""Ask a running predictor (V1 and V2) about image files; print {"v1": [...], "v2": [...]} as JSON.

Run inside the predictor's container by images/image-test.sh (the container has no network, so the
client runs next to the server):  python serve_check.py URL FILE...
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.request


def call(url: str, body: object | None = None) -> dict:
    """GET (no body) or POST JSON to ``url``; the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def main() -> None:
    """Wait until the server is ready, then ask V1, V2 and the V2 metadata."""
    url, files = sys.argv[1], sys.argv[2:]
    deadline = time.monotonic() + 300
    while True:
        try:
            call(f"{url}/v2/health/ready")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    blobs = [base64.b64encode(open(f, "rb").read()).decode() for f in files]
    v1 = call(f"{url}/v1/models/catsdogs:predict", {"instances": [{"b64": b} for b in blobs]})
    v2 = call(
        f"{url}/v2/models/catsdogs/infer",
        {
            "inputs": [
                {"name": "image_bytes", "datatype": "BYTES", "shape": [len(blobs)], "data": blobs}
            ]
        },
    )
    metadata = call(f"{url}/v2/models/catsdogs")
    outputs = {o["name"]: o["data"] for o in v2["outputs"]}
    print(
        json.dumps(
            {
                "v1": [p["p_dog"] for p in v1["predictions"]],
                "v2": outputs["p_dog"],
                "inputs": [i["name"] for i in metadata["inputs"]],
            }
        )
    )


if __name__ == "__main__":
    main()
