"""KFP wrapper: ``export_and_deploy`` (after a promotion: SavedModel export + KServe apply)."""

from catsdogs.components.common.config import image
from kfp import dsl

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_and_deploy(
    champion_uri: str,
    serving_uri: str,
    name: str = "catsdogs",
    predictor: str = "catsdogs",
    image: str = "",
    namespace: str = "",
    service_account: str = "catsdogs-predictor",
    canary_traffic_percent: int = -1,
    gpus: int = 0,
    runtime_version: str = "",
    cpu: str = "1",
    memory: str = "2Gi",
    dry_run: bool = False,
) -> str:
    """Export the champion to serving_uri/vNNNN/1/ and apply an InferenceService serving vNNNN.

    Args:
        champion_uri: Champion location (champion.json); its version numbers the export.
        serving_uri: SERVING_URI for the SavedModel versions (gs://...).
        name: InferenceService name.
        predictor: catsdogs (our image and server) or tensorflow-serving.
        image: Image of the catsdogs predictor (the pipeline's image); empty: this one's.
        namespace: Namespace; empty: the pod's own.
        service_account: Predictor service account that can read serving_uri.
        canary_traffic_percent: Traffic share for the new revision; -1: all of it.
        gpus: GPUs per predictor replica (0: CPU).
        runtime_version: tensorflow-serving only: TF Serving tag; empty: the pinned one.
        cpu: CPU request and limit per replica.
        memory: Memory request and limit per replica.
        dry_run: Export, build the manifest, apply nothing (local runs).

    Returns:
        The version prefix exported and applied as storageUri (serving_uri/vNNNN).
    """
    import dataclasses
    import json

    from catsdogs.components.serve import deploy, export

    settings = deploy.DeploySettings(  # checked before any work; storageUri set after export
        name=name,
        storage_uri=f"{serving_uri.rstrip('/')}/v0001",
        predictor=predictor,
        image=image,
        namespace=namespace,
        service_account=service_account,
        canary_traffic_percent=None if canary_traffic_percent < 0 else canary_traffic_percent,
        gpus=gpus,
        runtime_version=runtime_version,
        cpu=cpu,
        memory=memory,
    )
    exported = export.export(champion_uri, serving_uri)
    print(json.dumps(exported.to_dict()))
    body = deploy.manifest(dataclasses.replace(settings, storage_uri=exported.uri))
    print(json.dumps(body if dry_run else deploy.apply(body, deploy.api_client())))
    return exported.uri
