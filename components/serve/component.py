"""KFP wrapper: ``export_and_deploy`` (after a promotion: SavedModel export + KServe apply)."""

from catsdogs.components.common.config import image
from kfp import dsl

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_and_deploy(
    champion_uri: str,
    serving_uri: str,
    name: str = "catsdogs",
    namespace: str = "",
    service_account: str = "",
    canary_traffic_percent: int = -1,
    gpus: int = 0,
    runtime_version: str = "",
    cpu: str = "1",
    memory: str = "2Gi",
    dry_run: bool = False,
) -> str:
    """Export the champion to serving_uri/<its version>/ and apply the InferenceService.

    Args:
        champion_uri: Champion location (champion.json); its version numbers the export.
        serving_uri: SERVING_URI for the numbered SavedModel versions (gs://...).
        name: InferenceService name.
        namespace: Namespace; empty: the pod's own.
        service_account: Predictor service account that can read serving_uri.
        canary_traffic_percent: Traffic share for the new revision; -1: all of it.
        gpus: GPUs per predictor replica (0: CPU).
        runtime_version: TF Serving image tag (e.g. 2.6.2-gpu); empty: KServe's default.
        cpu: CPU request and limit per replica.
        memory: Memory request and limit per replica.
        dry_run: Export, build the manifest, apply nothing (local runs).

    Returns:
        The version folder exported (serving_uri/<N>).
    """
    import json

    from catsdogs.components.serve import deploy, export

    exported = export.export(champion_uri, serving_uri)
    print(json.dumps(exported.to_dict()))
    settings = deploy.DeploySettings(
        name=name,
        serving_uri=serving_uri,
        namespace=namespace,
        service_account=service_account,
        canary_traffic_percent=None if canary_traffic_percent < 0 else canary_traffic_percent,
        gpus=gpus,
        runtime_version=runtime_version,
        cpu=cpu,
        memory=memory,
    )
    body = deploy.manifest(settings)
    print(json.dumps(body if dry_run else deploy.apply(body, deploy.api_client())))
    return exported.uri
