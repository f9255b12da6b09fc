#!/usr/bin/env bash
# Build images/Dockerfile for real with podman, then run the CLI inside the container.
#
#   images/image-test.sh [all|base|build|run]      (make image-test runs "all")
#
# base:  a Debian bookworm minbase root file system (debootstrap), made once and cached as a tarball
#        under $CATSDOGS_CACHE (default ~/.cache/catsdogs), imported as $BASE_IMAGE. It stands in for
#        the production base (debian:bookworm-slim) where no registry can be reached.
# build: podman build --pull=never of the real Dockerfile with BASE_IMAGE swapped and EXTRAS= (the CPU
#        TensorFlow wheel instead of tensorflow[and-cuda]), from a context staged by
#        images/stage-context.sh with the weights of ../shared/weights (the build has no internet
#        to storage.googleapis.com here).
# run:   as the image's non-root user with --network none: catsdogs --help, catsdogs prepare on a few
#        real photos mounted read-only, a one-epoch catsdogs train-scratch on its output, a one-epoch
#        catsdogs train-transfer --weights imagenet (offline: the baked weights), and the
#        train_scratch KFP component run as the KFP launcher runs it (images/kfp_command.py); the
#        default KServe predictor (the InferenceService manifest's command, the model downloaded by
#        kserve-storage and mounted read-only at /mnt/models, uid 1000, no network; V1 and V2
#        answers checked against catsdogs predict); then
#        the whole pipeline with `catsdogs run --runner docker` (kfp.local's DockerRunner on podman's
#        Docker-compatible API, started and stopped by the command): both trainers, one or two
#        epochs, every task in the image as its non-root user with no network, the artifacts in a
#        local folder mounted into each task. The log ends with KFP's
#        "Pipeline 'catsdogs' finished with status SUCCESS".
#
# Needs root, the project's .venv (make install: catsdogs and the docker package) and the Debian
# packages podman, buildah, debootstrap and runc (installed with apt-get when missing), Debian's
# package mirror and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHARED=${SHARED:-$REPO/../shared}
CACHE=${CATSDOGS_CACHE:-$HOME/.cache/catsdogs}
BASE_IMAGE=${BASE_IMAGE:-localhost/catsdogs-base:bookworm}
TEST_IMAGE=${TEST_IMAGE:-localhost/catsdogs-test:local}
VENV_PYTHON=${VENV_PYTHON:-$REPO/.venv/bin/python}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PHOTOS_PER_CLASS=${PHOTOS_PER_CLASS:-20}
STEP=${1:-all}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'Error: %s\n' "$*" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/catsdogs-image-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

prerequisites() {
    local missing=()
    for tool in podman buildah debootstrap runc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null \
            || die "missing ${missing[*]}; install the Debian packages podman buildah debootstrap runc (as root)."
        say "Installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null
    fi
    [[ $(id -u) == 0 ]] || die "run as root: the base image is made with debootstrap and podman runs rootful here."

    # runc instead of crun, and default ulimits inside this machine's hard limits (podman's defaults
    # exceed them here); nproc is capped at pid_max.
    local nofile nproc pid_max
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    pid_max=$(cat /proc/sys/kernel/pid_max)
    [[ $nofile == unlimited ]] && nofile=1048576
    if [[ $nproc == unlimited ]] || ((nproc > pid_max)); then nproc=$pid_max; fi
    {
        echo "[containers]"
        echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
        echo
        cat images/containers.conf
    } >"$WORK/containers.conf"
    export CONTAINERS_CONF=$WORK/containers.conf
}

make_base() {
    if podman image exists "$BASE_IMAGE"; then
        say "Base image $BASE_IMAGE exists"
        return
    fi
    local tarball=$CACHE/base-bookworm.tar
    if [[ ! -s $tarball ]]; then
        say "Making the bookworm minbase root file system (once; cached as $tarball)"
        mkdir -p "$CACHE"
        debootstrap --variant=minbase bookworm "$WORK/rootfs" "$DEBIAN_MIRROR"
        rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
        tar --numeric-owner -C "$WORK/rootfs" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$WORK/rootfs"
    fi
    say "Importing $tarball as $BASE_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

build_image() {
    images/stage-context.sh "$WORK/context" "$SHARED/weights"
    local secret=()
    [[ -s $CA_BUNDLE ]] && secret=(--secret "id=ca,src=$CA_BUNDLE")
    say "Building $TEST_IMAGE from images/Dockerfile (BASE_IMAGE=$BASE_IMAGE, EXTRAS= : CPU TensorFlow)"
    local start=$SECONDS
    nice -n 10 podman build --pull=never --network host --layers \
        -f "$WORK/context/images/Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg EXTRAS= \
        "${secret[@]}" -t "$TEST_IMAGE" "$WORK/context"
    local took=$((SECONDS - start)) size
    size=$(podman image inspect --format '{{.Size}}' "$TEST_IMAGE")
    say "Build time: ${took}s; image size: $((size / 1000000)) MB ($size bytes)"
}

in_container() {
    # The image's own USER (non-root), no network, the photos read-only.
    echo "+ catsdogs-container: $*"
    podman run --rm --network none \
        -v "$WORK/photos:/data/photos:ro" -v "$WORK/out:/out" \
        "$TEST_IMAGE" "$@"
}

run_image() {
    podman image exists "$TEST_IMAGE" || die "no image $TEST_IMAGE; run: $0 build"
    local photos=$SHARED/data/dogs-vs-cats/train-6000
    [[ -d $photos ]] || die "no photos at $photos; set SHARED=<folder with data/dogs-vs-cats/train-6000>."
    mkdir -p "$WORK/photos" "$WORK/out"
    for label in cat dog; do
        for ((i = 0; i < PHOTOS_PER_CLASS; i++)); do
            cp "$photos/$label.$i.jpg" "$WORK/photos/"
        done
    done
    local uid
    uid=$(podman run --rm --network none "$TEST_IMAGE" id -u)
    [[ $uid != 0 ]] || die "the image runs as root; it must run as its non-root user."
    chown "$uid" "$WORK/out"

    say "Running inside $TEST_IMAGE as uid $uid with --network none"
    in_container id
    in_container sh -c 'ls -l "$CATSDOGS_WEIGHTS_DIR"'
    in_container catsdogs --help
    local train=$((PHOTOS_PER_CLASS / 2)) rest=$((PHOTOS_PER_CLASS / 4))
    in_container catsdogs prepare --source /data/photos --output /out/dataset \
        --train-per-class "$train" --val-per-class "$rest" --test-per-class "$rest"
    in_container catsdogs train-scratch --data /out/dataset --output /out/model \
        --epochs 1 --batch-size 8
    # --weights imagenet with no network: must use the weights baked into the image.
    in_container catsdogs train-transfer --data /out/dataset --output /out/transfer \
        --weights imagenet --epochs 1 --batch-size 8
    say "The train_scratch KFP component, run the way the KFP launcher runs it (sh -ec ... executor_main)"
    local kfp_command=()
    mapfile -d '' -t kfp_command < <(
        podman run --rm --network none -v "$REPO/images/kfp_command.py:/tmp/kfp_command.py:ro" \
            "$TEST_IMAGE" python /tmp/kfp_command.py /out/dataset /out/kfp 1 \
            | python3 -c 'import json, sys; sys.stdout.write("".join(a + "\0" for a in json.load(sys.stdin)))'
    )
    ((${#kfp_command[@]} > 2)) || die "could not read the component's command from the image"
    echo "+ catsdogs-container: ${kfp_command[*]:0:2} '<launcher script: python3 -m kfp.dsl.executor_main ...>'" \
        "'<component source>' ${kfp_command[*]: -4:1} '<executor input JSON>' ${kfp_command[*]: -2}"
    podman run --rm --network none -v "$WORK/out:/out" "$TEST_IMAGE" "${kfp_command[@]}"
    say "Outputs written by the container"
    (cd "$WORK/out" && find . -type f | sort)
    [[ -s $WORK/out/dataset/manifest.json ]] || die "prepare wrote no dataset/manifest.json"
    [[ -s $WORK/out/model/model.keras ]] || die "train-scratch wrote no model/model.keras"
    [[ -s $WORK/out/transfer/model.keras ]] || die "train-transfer wrote no transfer/model.keras"
    [[ -s $WORK/out/kfp/executor_output.json ]] || die "the KFP component wrote no executor_output.json"
    run_predictor
    run_pipeline "$train" "$rest"
    say "image-test passed"
}

run_predictor() {
    # The KServe path: export a version, copy it through gs:// (fake-gcs-server) with KServe's storage
    # initializer code (kserve-storage, from the host's .venv) into a folder laid out like
    # /mnt/models (images/storage_initializer.py), then run the
    # default predictor's container command from the InferenceService manifest in the image, with
    # that folder mounted read-only at /mnt/models, as uid 1000, with no network; a client inside the
    # same container asks V1 and V2, and the answers must match `catsdogs predict`.
    [[ -x $VENV_PYTHON ]] || die "no $VENV_PYTHON; run make install (or set VENV_PYTHON=...)."
    say "The default predictor: export, KServe's storage initializer, the manifest's command in the image"
    in_container catsdogs export --model /out/model --output /out/serving
    local version=$WORK/out/serving/v0001 mount=$WORK/mnt/models
    [[ -s $version/1/saved_model.pb ]] || die "export wrote no v0001/1/saved_model.pb"
    GCE_METADATA_HOST=127.0.0.1 GCE_METADATA_IP=127.0.0.1 \
        "$VENV_PYTHON" images/storage_initializer.py "$version" "$mount"
    chmod -R a+rX,a-w "$mount"
    local command=()
    mapfile -d '' -t command < <(
        "$VENV_PYTHON" -c 'import sys
from catsdogs.components.serve import deploy
body = deploy.manifest(deploy.DeploySettings(name="catsdogs", storage_uri="gs://b/serving/v0001", image=sys.argv[1]))
container = body["spec"]["predictor"]["containers"][0]
assert container["image"] == sys.argv[1]
sys.stdout.write("".join(a + "\0" for a in container["command"]))' "$TEST_IMAGE"
    )
    ((${#command[@]} > 2)) || die "could not read the predictor command from the manifest"
    local port=${command[-1]} name=catsdogs-predictor-$$ photos=()
    for label in cat dog; do photos+=("/data/photos/$label.0.jpg" "/data/photos/$label.1.jpg"); done
    echo "+ predictor: ${command[*]}"
    podman run -d --rm --name "$name" --network none --user 1000 \
        -v "$mount:/mnt/models:ro" -v "$WORK/photos:/data/photos:ro" \
        -v "$REPO/images/serve_check.py:/tmp/serve_check.py:ro" -e STORAGE_URI=/mnt/models \
        "$TEST_IMAGE" "${command[@]}" >/dev/null
    local answers expected
    answers=$(podman exec "$name" python /tmp/serve_check.py "http://127.0.0.1:$port" "${photos[@]}") \
        || { podman logs "$name" | tail -40; podman stop "$name" >/dev/null; die "the predictor did not answer"; }
    podman logs "$name" 2>&1 | tail -5
    podman stop "$name" >/dev/null
    expected=$(in_container catsdogs predict --model /out/model --jsonl "${photos[@]}" | grep '^{')
    echo "predictor: $answers"
    ANSWERS=$answers EXPECTED=$expected python3 -c 'import json, os
answers = json.loads(os.environ["ANSWERS"])
expected = [json.loads(line)["p_dog"] for line in os.environ["EXPECTED"].splitlines()]
assert "image_bytes" in answers["inputs"], answers
for kind in ("v1", "v2"):
    worst = max(abs(a - b) for a, b in zip(answers[kind], expected, strict=True))
    assert worst <= 1e-4, (kind, answers[kind], expected)
print(f"V1 and V2 match catsdogs predict on {len(expected)} photos (within 1e-4)")' \
        || die "the predictor's answers differ from catsdogs predict"
}

run_pipeline() {
    local train=$1 rest=$2 log=$WORK/pipeline.log
    [[ -x $VENV_PYTHON ]] || die "no $VENV_PYTHON; run make install (or set VENV_PYTHON=...)."
    say "The whole pipeline, every task in $TEST_IMAGE (kfp.local DockerRunner on podman's API socket)"
    # --transfer-weights imagenet with no network: the transfer tasks must find the weights baked in.
    nice -n 10 "$VENV_PYTHON" -m catsdogs.cli run --runner docker --image "$TEST_IMAGE" \
        --source "$WORK/photos" --output "$WORK/pipeline" --train-per-class "$train" \
        --val-per-class "$rest" --test-per-class "$rest" --trainers both --scratch-epochs 1 \
        --transfer-epochs 2 --batch-size 8 --transfer-weights imagenet 2>&1 | tee "$log"
    # kfp.local's own lines are on the console or, with catsdogs run's task console, in run.log.
    local finished
    finished=$({ cat "$log"; find "$WORK/pipeline" -name '*.log' -exec cat {} +; } \
        | sed 's/\x1b\[[0-9;]*m//g' | grep -m1 "Pipeline 'catsdogs' finished with status") || true
    echo "${finished:-no line: Pipeline 'catsdogs' finished with status ...}"
    [[ $finished == *"Pipeline 'catsdogs' finished with status SUCCESS"* ]] \
        || die "the pipeline run did not finish with status SUCCESS (log above)."
    # -print -quit: find stops at the first match (grep -q would close the pipe early, and
    # pipefail would then count find's SIGPIPE as a failure).
    find "$WORK/pipeline/kfp" -path '*render-activations*' -name '*.html' -size +0 -print -quit \
        | grep -q . \
        || die "the pipeline run wrote no activation report."
}

prerequisites
case $STEP in
    base) make_base ;;
    build) make_base && build_image ;;
    run) run_image ;;
    all) make_base && build_image && run_image ;;
    *) die "unknown step '$STEP'; expected all, base, build or run." ;;
esac
