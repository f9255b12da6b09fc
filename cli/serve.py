"""``catsdogs export``, ``serve`` and ``deploy``: the champion as a SavedModel, served and deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from catsdogs.components.common import storage
from catsdogs.components.serve.deploy import DeploySettings

app = typer.Typer()
_DEPLOY = DeploySettings(name="catsdogs", storage_uri="gs://bucket/serving/v0001")  # its defaults

ServingUriOption = Annotated[
    str,
    typer.Option(
        help="SERVING_URI: folder or gs:// / s3:// prefix of numbered SavedModel versions."
    ),
]


@app.command("export")
def export(
    model: Annotated[
        str,
        typer.Option(help="Model folder (model.keras), champion location or champion version."),
    ],
    output: ServingUriOption,
    version: Annotated[
        int | None,
        typer.Option(help="Version folder number; default: the champion's, else the next free."),
    ] = None,
    check_image: Annotated[
        list[str] | None,
        typer.Option(help="Also check these images (files, folders) against `catsdogs predict`."),
    ] = None,
) -> None:
    """Write a TensorFlow SavedModel to OUTPUT/<N>/ for TF Serving and KServe.

    serving_default takes encoded JPEG/PNG bytes (decoding, resizing and preprocessing are in the
    graph); serving_pixels takes float RGB pixels at the model's size. The export must give the
    probabilities of `catsdogs predict` within 1e-4, or nothing is written. Re-exporting the same
    model to the same version does nothing.
    """
    from catsdogs.components.serve import export as exporter

    storage.check_output(output, "--output")
    result = exporter.export(model, output, version, list(check_image or []))
    if result.created:
        typer.echo(
            f"Exported version {result.version} to {result.uri} (max |export - predict| "
            f"{result.max_difference:.1e})"
        )
    else:
        typer.echo(f"{result.uri} already holds this model (sha256 {result.model_sha256[:12]})")


@app.command("serve")
def serve(
    model: Annotated[
        str,
        typer.Option(
            help="SERVING_URI (its newest complete version), a version prefix (vNNNN, or "
            "/mnt/models), a SavedModel folder, a model folder or a champion location or version."
        ),
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 inside a predictor pod.")
    ] = "127.0.0.1",
) -> None:
    """Serve the model on 127.0.0.1 with KServe's model server (V1 and V2 protocols).

    POST /v1/models/catsdogs:predict with {"instances": [{"b64": "<base64 JPEG>"}]}, or
    /v2/models/catsdogs/infer with a BYTES input image_bytes (base64) or FP32 input pixels.
    TF Serving's other REST bodies work too: {"instances": [{"image_bytes": {"b64": ...}}]} and
    {"inputs": {"image_bytes": [{"b64": ...}]}}. GET /v2/models/catsdogs lists inputs and outputs.
    Health: /v2/health/live, readiness: /v2/health/ready. Stop with Ctrl-C.
    """
    from catsdogs.components.serve import server

    server.serve(model, port, host)


@app.command("deploy")
def deploy(
    serving_uri: Annotated[
        str,
        typer.Option(
            help="SERVING_URI (then --version, else its newest complete version) or one version "
            "prefix SERVING_URI/vNNNN."
        ),
    ],
    version: Annotated[
        int | None, typer.Option(help="The exported version to serve (SERVING_URI/vNNNN).")
    ] = None,
    predictor: Annotated[
        str, typer.Option(help="catsdogs (our image and server) or tensorflow-serving.")
    ] = _DEPLOY.predictor,
    image: Annotated[
        str, typer.Option(help="Image of the catsdogs predictor; default: the pipeline's image.")
    ] = "",
    name: Annotated[str, typer.Option(help="InferenceService name.")] = _DEPLOY.name,
    namespace: Annotated[
        str, typer.Option(help="Namespace; default: the pod's, else 'default'.")
    ] = _DEPLOY.namespace,
    service_account: Annotated[
        str, typer.Option(help="Predictor service account (reads SERVING_URI).")
    ] = _DEPLOY.service_account,
    canary_traffic_percent: Annotated[
        int | None, typer.Option(help="Traffic share for the new revision (0-100).")
    ] = _DEPLOY.canary_traffic_percent,
    gpus: Annotated[int, typer.Option(help="GPUs per replica (0: CPU).")] = _DEPLOY.gpus,
    accelerator_type: Annotated[
        str, typer.Option(help="GPU resource name.")
    ] = _DEPLOY.accelerator_type,
    runtime_version: Annotated[
        str,
        typer.Option(
            help="tensorflow-serving only: the TF Serving tag (not older than the pinned one)."
        ),
    ] = _DEPLOY.runtime_version,
    cpu: Annotated[str, typer.Option(help="CPU request and limit.")] = _DEPLOY.cpu,
    memory: Annotated[str, typer.Option(help="Memory request and limit.")] = _DEPLOY.memory,
    min_replicas: Annotated[
        int, typer.Option(help="Replicas kept running.")
    ] = _DEPLOY.min_replicas,
    max_replicas: Annotated[int, typer.Option(help="Autoscaler maximum.")] = _DEPLOY.max_replicas,
    host: Annotated[
        str, typer.Option(help="Kubernetes API URL; default: in-cluster config, else kubeconfig.")
    ] = "",
    token: Annotated[
        str,
        typer.Option(
            help="Bearer token for --host (visible in `ps`: prefer --token-file or "
            "CATSDOGS_KUBE_TOKEN)."
        ),
    ] = "",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer token for --host (default: CATSDOGS_KUBE_TOKEN)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the manifest; change nothing.")] = False,
) -> None:
    """Create or update the KServe InferenceService serving SERVING_URI (server-side apply).

    storageUri is one version's prefix (SERVING_URI/vNNNN), so each new version is a new revision.
    Rerunning with the same options changes nothing. The RBAC the caller needs, and the
    predictor's service account, are in components/serve/manifests/rbac.yaml.
    """
    import yaml
    from catsdogs.components.serve import deploy as deployer
    from catsdogs.components.serve import export as exporter

    settings = DeploySettings(
        name=name,
        storage_uri=exporter.deployable_version(serving_uri, version),
        predictor=predictor,
        image=image,
        namespace=namespace,
        service_account=service_account,
        canary_traffic_percent=canary_traffic_percent,
        gpus=gpus,
        accelerator_type=accelerator_type,
        runtime_version=runtime_version,
        cpu=cpu,
        memory=memory,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
    body = deployer.manifest(settings)
    if dry_run:
        typer.echo(yaml.safe_dump(body, sort_keys=False), nl=False)
        return
    bearer = _kube_token(token, token_file)
    result = deployer.apply(body, deployer.api_client(host or None, bearer))
    metadata = result.get("metadata", {})
    typer.echo(
        json.dumps(
            {
                "applied": f"{metadata.get('namespace')}/{metadata.get('name')}",
                "generation": metadata.get("generation"),
                "url": (result.get("status") or {}).get("url"),
            }
        )
    )


def _kube_token(token: str, token_file: Path | None) -> str | None:
    """The bearer token: --token, else --token-file, else ``CATSDOGS_KUBE_TOKEN``; masked in output.

    Raises:
        SettingsError: More than one was given, or the file cannot be read or is empty.
    """
    from catsdogs.components.common import config, redaction
    from catsdogs.components.common.errors import SettingsError

    if token and token_file is not None:
        raise SettingsError("--token and --token-file both name a token; give one of them.")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            raise SettingsError(
                f"--token-file {token_file} cannot be read ({error.strerror or error}); point it "
                "at a file that holds the bearer token."
            ) from error
        if not token:
            raise SettingsError(f"--token-file {token_file} is empty; it must hold the token.")
    token = token or config.kube_token() or ""
    redaction.register(token)
    return token or None
