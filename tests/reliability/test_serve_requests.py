"""Findings 2, 3 and 6 (issue 21), and the TF Serving REST bodies (issue 19), against a real server.

- The body limit counts the bytes read, so a ``Transfer-Encoding: chunked`` body over it is a 413.
- The pixels a request makes the server decode are budgeted per request, not only per image.
- V2 errors are 4xx with one log line and no traceback: shape/data mismatch, huge and negative
  shapes, non-integer shapes, the binary data extension (not promised: refused in one line),
  unknown model names; control characters in the request path never reach the log raw.
- The TF Serving bodies (row with b64, row with the input named, columnar) all work, and their
  malformed variants are 400s while the server keeps serving.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from catsdogs.components.serve import export

from tests.conftest import _free_port
from tests.serve_process import running
from tests.tiny_models import flat_model, save_model_dir, write_jpeg


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("requests")
    model = save_model_dir(flat_model(size=32, seed=11), root / "model")
    export.export(model, str(root / "serving"))
    port = _free_port()
    catsdogs = str(Path(sys.executable).with_name("catsdogs"))
    argv = [catsdogs, "serve", "--model", str(root / "serving"), "--port", str(port)]
    with running(argv, port, root / "server.log") as found:
        found["photo"] = write_jpeg(root / "photo.jpg", size=45, seed=2).read_bytes()
        yield found


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def v1(server: dict, body: object) -> tuple[int, dict]:
    return post(f"{server['url']}/v1/models/catsdogs:predict", json.dumps(body).encode())


def v2(server: dict, body: object, name: str = "catsdogs") -> tuple[int, dict]:
    return post(f"{server['url']}/v2/models/{name}/infer", json.dumps(body).encode())


def still_serving(server: dict) -> None:
    b64 = base64.b64encode(server["photo"]).decode()
    status, answer = v1(server, {"instances": [{"b64": b64}]})
    assert status == 200 and len(answer["predictions"]) == 1, answer


def test_chunked_body_over_the_limit_is_refused(server: dict) -> None:
    from catsdogs.components.serve import payloads

    connection = http.client.HTTPConnection("127.0.0.1", int(server["url"].rsplit(":", 1)[1]))
    connection.putrequest("POST", "/v1/models/catsdogs:predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b" " * (1 << 20)
    status = None
    try:
        for _ in range(payloads.MAX_REQUEST_BYTES // len(chunk) + 8):
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before the whole body is sent
    response = connection.getresponse()
    status = response.status
    assert status == 413, response.read()[:300]
    connection.close()
    still_serving(server)


def claimed(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims ``width`` x ``height`` pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_pixels_are_budgeted_per_request(server: dict) -> None:
    bomb = base64.b64encode(claimed(6000, 6000)).decode()  # 36 MP each, under the per-image cap
    status, answer = v1(server, {"instances": [{"b64": bomb}] * 8})
    assert status == 413 and "per request" in answer["error"], answer
    status, answer = v2(
        server,
        {
            "inputs": [
                {"name": "image_bytes", "datatype": "BYTES", "shape": [8], "data": [bomb] * 8}
            ]
        },
    )
    assert status == 413 and "per request" in answer["error"], answer
    still_serving(server)


def _photo_b64() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 100, 50)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


PHOTO = _photo_b64()
V2_ATTACKS = {
    "pixels data shorter than its shape": {
        "name": "pixels", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": [1.0] * 10,
    },
    "huge shape": {"name": "image_bytes", "datatype": "BYTES", "shape": [10**12], "data": ["a"]},
    "negative shape": {"name": "image_bytes", "datatype": "BYTES", "shape": [-1], "data": [PHOTO]},
    "bytes shape larger than data": {
        "name": "image_bytes", "datatype": "BYTES", "shape": [3], "data": [PHOTO],
    },
    "bytes shape of two dimensions": {
        "name": "image_bytes", "datatype": "BYTES", "shape": [1, 1], "data": [PHOTO],
    },
    "text shape": {"name": "pixels", "datatype": "FP32", "shape": ["x"], "data": [1.0]},
    "pixels as text": {"name": "pixels", "datatype": "FP32", "shape": [1], "data": ["x"]},
    "bytes element not text": {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [7]},
}  # fmt: skip


@pytest.mark.parametrize("attack", list(V2_ATTACKS))
def test_v2_errors_are_400s(server: dict, attack: str) -> None:
    status, answer = v2(server, {"inputs": [V2_ATTACKS[attack]]})
    assert status in (400, 413), (attack, status, answer)
    assert "error" in answer


def test_binary_extension_is_refused_in_one_line(server: dict) -> None:
    header = json.dumps(
        {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                     "parameters": {"binary_data_size": 4 + len(server["photo"])}}]}
    ).encode()  # fmt: skip
    body = header + len(server["photo"]).to_bytes(4, "little") + server["photo"]
    status, answer = post(
        f"{server['url']}/v2/models/catsdogs/infer",
        body,
        {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert status == 400 and "base64" in answer["error"], answer
    huge = header[:-2] + b', "binary_data_size": 4294967295}]}'
    status, _ = post(
        f"{server['url']}/v2/models/catsdogs/infer",
        huge + b"\xff\xff\xff\xff",
        {"Inference-Header-Content-Length": str(len(huge))},
    )
    assert status == 400


def test_unknown_model_and_escape_codes_in_the_path_log_one_clean_line(server: dict) -> None:
    b64 = base64.b64encode(server["photo"]).decode()
    body = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [b64]}]}
    status, _ = v2(server, body, name="nosuchmodel")
    assert status == 404
    status, _ = v2(server, body, name="%1b%5b31mred%1b%5b0m")
    assert status == 404
    still_serving(server)


def test_tf_serving_bodies_answer_alike(server: dict) -> None:
    b64 = base64.b64encode(server["photo"]).decode()
    rows = [
        v1(server, {"instances": [{"b64": b64}, {"b64": b64}]}),
        v1(
            server,
            {"signature_name": "serving_default", "instances": [{"image_bytes": {"b64": b64}}]},
        ),
    ]
    columns = [
        v1(server, {"inputs": {"image_bytes": [{"b64": b64}]}}),
        v1(server, {"inputs": [{"b64": b64}, {"b64": b64}]}),
    ]
    for status, answer in rows:
        assert status == 200, answer
    for status, answer in columns:
        assert status == 200, answer
    probabilities = {round(a["predictions"][0]["p_dog"], 6) for _, a in rows}
    probabilities |= {round(a["outputs"]["p_dog"][0], 6) for _, a in columns}
    assert len(probabilities) == 1
    assert columns[1][1]["outputs"]["label"] == [rows[0][1]["predictions"][0]["label"]] * 2


MALFORMED = {
    "named input not an object": {"instances": [{"image_bytes": b"abc".hex()}]},
    "unknown named input": {"inputs": {"pixels": [{"b64": "AAAA"}]}},
    "columnar value not a list": {"inputs": {"image_bytes": {"b64": "AAAA"}}},
    "both instances and inputs": {"instances": [{"b64": "AAAA"}], "inputs": [{"b64": "AAAA"}]},
    "empty instances": {"instances": []},
    "extra key beside b64": {"instances": [{"image_bytes": {"b64": "AAAA"}, "other": 1}]},
    "b64 not base64": {"inputs": {"image_bytes": [{"b64": "%%%"}]}},
    "b64 of text": {"instances": [{"b64": base64.b64encode(b"hello").decode()}]},
    "instances not a list": {"instances": {"b64": "AAAA"}},
}


@pytest.mark.parametrize("variant", list(MALFORMED))
def test_malformed_tf_serving_bodies_are_400s(server: dict, variant: str) -> None:
    status, answer = v1(server, MALFORMED[variant])
    assert status == 400, (variant, answer)
    assert answer.get("error"), answer


def test_v2_metadata_lists_inputs_and_outputs(server: dict) -> None:
    with urllib.request.urlopen(f"{server['url']}/v2/models/catsdogs", timeout=10) as response:
        metadata = json.loads(response.read())
    inputs = {i["name"]: i for i in metadata["inputs"]}
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert inputs["image_bytes"] == {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}
    assert inputs["pixels"]["shape"] == [-1, 32, 32, 3] and inputs["pixels"]["datatype"] == "FP32"
    assert outputs["p_dog"]["datatype"] == "FP32" and outputs["label"]["datatype"] == "BYTES"


def test_zz_log_has_no_traceback_and_no_raw_escape(server: dict) -> None:
    # Runs last (name order within the module): every refusal above logged one line.
    still_serving(server)
    log = server["log"].read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "\x1b" not in log
    assert "nosuchmodel" in log and "\\x1b" in log  # logged, escaped
    assert "W0000" not in log and "E0000" not in log  # no TensorFlow start-up noise
    refused = [line for line in log.splitlines() if "refused" in line]
    assert len(refused) >= 10 and all(len(line) < 600 for line in refused)
