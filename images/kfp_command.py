"""Print, as JSON, the command KFP runs for the train_scratch component, with its executor input.

``images/image-test.sh`` runs this inside the image and then runs the printed command in a fresh
container, which is what the KFP launcher (cluster) and kfp.local's DockerRunner do: the component
spec's ``sh -ec ... python3 -m kfp.dsl.executor_main`` with ``--executor_input`` filled in. It proves
that the image's lightweight components work with ``install_kfp_package=False``.

Usage: ``python kfp_command.py DATA_DIR OUTPUT_DIR [EPOCHS]`` (paths as seen inside the container).
"""

from __future__ import annotations

import json
import sys


def artifact(name: str, schema: str, uri: str) -> dict[str, object]:
    """One artifact of an executor input."""
    return {
        "artifacts": [{"name": name, "type": {"schemaTitle": schema}, "uri": uri, "metadata": {}}]
    }


def command(data: str, output: str, epochs: int) -> list[str]:
    """The component's command and arguments with the executor input filled in."""
    from catsdogs.components.train_scratch.component import train_scratch

    executors = train_scratch.pipeline_spec.deployment_spec["executors"]
    container = executors[next(iter(executors))]["container"]
    executor_input = {
        "inputs": {
            "artifacts": {"data": artifact("data", "system.Dataset", data)},
            "parameterValues": {"epochs": epochs, "batch_size": 8},
        },
        "outputs": {
            "artifacts": {
                "model": artifact("model", "system.Model", f"{output}/model"),
                "metrics": artifact("metrics", "system.Metrics", f"{output}/metrics"),
                "curves": artifact("curves", "system.HTML", f"{output}/curves"),
            },
            "parameters": {"Output": {"outputFile": f"{output}/Output"}},
            "outputFile": f"{output}/executor_output.json",
        },
    }
    arguments = [str(a).replace("{{$}}", json.dumps(executor_input)) for a in container["args"]]
    return [str(c) for c in container["command"]] + arguments


def main(argv: list[str]) -> int:
    """Print the command for ``argv = [DATA_DIR, OUTPUT_DIR, EPOCHS?]``."""
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    print(json.dumps(command(argv[0], argv[1], int(argv[2]) if len(argv) == 3 else 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
