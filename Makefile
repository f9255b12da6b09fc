# catsdogs: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
OUT ?= out

.DEFAULT_GOAL := help
.PHONY: help install lock test test-fast lint format bench accuracy run run-smoke compile submit-pipeline schedule golden images image-test clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

LOCK := requirements.lock

install: ## Create .venv and install the package with its dev tools: every package at its requirements.lock pin
	@command -v $(PYTHON) >/dev/null || { echo "Error: $(PYTHON) not found; set PYTHON=python3.x (3.11 or 3.12)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[dev]"

# uv resolves for Linux x86_64 and Python 3.11 (the image's and CI's), keeping the pins already in the
# lock; LOCK_ARGS=--upgrade re-resolves everything to the newest versions pyproject.toml allows.
LOCK_ARGS ?=
lock: ## Regenerate requirements.lock (every transitive package of every extra, exact) from pyproject.toml with uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -c images/constraints-gpu.txt \
		--custom-compile-command "make lock" --no-annotate -o $(LOCK) $(LOCK_ARGS)

test: ## Run the test suite (what CI runs)
	$(BIN)/pytest -q

test-fast: ## Run the tests without the slow end-to-end tier
	$(BIN)/pytest -q -m "not slow"

lint: ## Ruff (lint + format check), mypy, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint images/Dockerfile

format: ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# ----------------------------------------------------------------------------- benchmarks
.PHONY: bench-prepare
bench: bench-prepare
BENCH_MIN_IMAGES ?= 4000

bench-prepare: ## prepare's full path through Pillow, simplejpeg (adopted) and pyturbojpeg side by side vs a 1-core Pillow baseline, with pixel differences (../shared original-size)
	$(BIN)/python benchmarks/bench_prepare.py --source $(SHARED)/data/dogs-vs-cats/original-size --min-images $(BENCH_MIN_IMAGES)

.PHONY: bench-scratch accuracy-scratch accuracy-gpu
bench: bench-scratch
accuracy: accuracy-scratch
ACCURACY_SCRATCH_EPOCHS ?= 100

bench-scratch: ## train_scratch: tf.data+augmentation images/s and one epoch vs the seed's ImageDataGenerator (2000 train images)
	$(BIN)/python benchmarks/bench_scratch.py --source $(SHARED)/data/dogs-vs-cats/train-6000

.PHONY: bench-gpu
SMOKE ?=

bench-gpu: ## One GPU run: VGG16 features of 25,000 images, the seed's CNN (1 and 100 epochs), input vs device, vs ImageDataGenerator (SMOKE=1: tiny, CPU)
	mkdir -p $(OUT) && $(BIN)/python benchmarks/bench_gpu.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --weights $(VGG16_FILE) --output $(OUT)/bench-gpu.json $(if $(SMOKE),--smoke)

accuracy-gpu: ## the whole accuracy table of docs/benchmarks.md (test + new data, Wilson CI), ~10 min on one H200; SMOKE=1: CPU smoke
	$(BIN)/python benchmarks/accuracy_gpu.py

accuracy-scratch: ## one scratch candidate on the book's split + ids 2000-2999, Wilson CIs (ACCURACY_SCRATCH_EPOCHS=100, ACCURACY_SCRATCH_ARGS=; resumable)
	$(BIN)/python benchmarks/accuracy_scratch.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --epochs $(ACCURACY_SCRATCH_EPOCHS) $(ACCURACY_SCRATCH_ARGS)

.PHONY: bench-evaluate
bench: bench-evaluate

bench-evaluate: ## evaluate/render/predict/promote on real photos: brief scratch training, timings and the report (~5 min)
	nice -n 10 $(BIN)/python benchmarks/evaluate_real.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --originals $(SHARED)/data/dogs-vs-cats/original-size --output $(OUT)/evaluate-real

.PHONY: bench-transfer accuracy-transfer
bench: bench-transfer
accuracy: accuracy-transfer
ACCURACY_TRANSFER_EPOCHS ?= 30
ACCURACY_FINE_TUNE_EPOCHS ?= 10
TRANSFER_RUNS ?= vgg16:features,vgg16:frozen,vgg16:fine-tune,mobilenet_v2:features

bench-transfer: ## train_transfer features mode vs the seed's frozen-VGG16 recipe: time to 95% val accuracy (seed extrapolated)
	$(BIN)/python benchmarks/bench_transfer.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --weights $(SHARED)/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 --epochs $(ACCURACY_TRANSFER_EPOCHS)

accuracy-transfer: ## train_transfer test accuracy per mode + MobileNetV2 features (TRANSFER_RUNS=, ACCURACY_TRANSFER_EPOCHS=30; resumable)
	$(BIN)/python benchmarks/accuracy_transfer.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --runs $(TRANSFER_RUNS) --epochs $(ACCURACY_TRANSFER_EPOCHS) --fine-tune-epochs $(ACCURACY_FINE_TUNE_EPOCHS) --vgg16-weights $(SHARED)/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 --mobilenet-v2-weights $(SHARED)/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5

.PHONY: bench-serve
bench: bench-serve

bench-serve: ## catsdogs serve on 127.0.0.1: requests/s, p50/p99 on real photos vs catsdogs predict (~1 min)
	$(BIN)/python benchmarks/bench_serve.py --source $(SHARED)/data/dogs-vs-cats/train-6000 --seconds 20

# ----------------------------------------------------------------------------- images
# The image reference has one source: DEFAULT_IMAGE in components/common/config.py
# (registry/name:tag). REGISTRY and TAG override its parts; the pipeline compiles against the result
# when CATSDOGS_IMAGE is set to it.
IMAGE_DEFAULT = $(shell python3 -c "import runpy; print(runpy.run_path('components/common/config.py')['DEFAULT_IMAGE'])")
REGISTRY ?= $(patsubst %/,%,$(dir $(IMAGE_DEFAULT)))
IMAGE_NAME ?= $(firstword $(subst :, ,$(notdir $(IMAGE_DEFAULT))))
TAG ?= $(lastword $(subst :, ,$(notdir $(IMAGE_DEFAULT))))
IMAGE = $(REGISTRY)/$(IMAGE_NAME):$(TAG)
ENGINE ?= $(shell command -v podman >/dev/null && echo podman || echo docker)
WEIGHTS_DIR ?=
CA_BUNDLE ?=
comma := ,

# The pushed image's digest is recorded in IMAGE_REF as registry/name:tag@sha256:...: compile,
# submit-pipeline and schedule use it (a cluster run refuses a bare tag unless ALLOW_TAG=1).
IMAGE_REF ?= build/image.ref

images: ## Build and push the GPU image, record its digest in build/image.ref (REGISTRY=, TAG=, ENGINE=docker|podman, WEIGHTS_DIR= when offline)
	@case "$(TAG)" in ""|latest) echo "Error: TAG='$(TAG)'; use a version tag, never latest (e.g. TAG=0.1.0)."; exit 2;; esac
	images/stage-context.sh build/image-context $(WEIGHTS_DIR)
	$(ENGINE) build -f build/image-context/images/Dockerfile -t $(IMAGE) $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) build/image-context
	mkdir -p $(dir $(IMAGE_REF)) && rm -f $(IMAGE_REF) build/image.digest
	if [ "$(notdir $(ENGINE))" = podman ]; then $(ENGINE) push --digestfile build/image.digest $(IMAGE); \
	else $(ENGINE) push $(IMAGE) && $(ENGINE) inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' $(IMAGE) \
		| grep -m1 '^$(REGISTRY)/$(IMAGE_NAME)@' | sed 's/.*@//' > build/image.digest; fi
	@grep -Eq '^sha256:[0-9a-f]{64}$$' build/image.digest || { echo "Error: no digest for $(IMAGE) after the push (build/image.digest: '$$(cat build/image.digest)')."; exit 1; }
	echo "$(IMAGE)@$$(cat build/image.digest)" > $(IMAGE_REF)
	@echo "Pushed $$(cat $(IMAGE_REF)) (recorded in $(IMAGE_REF)); make compile/submit-pipeline/schedule use it, or: export CATSDOGS_IMAGE=$$(cat $(IMAGE_REF))"

image-test: ## Build images/Dockerfile with podman here (local base, CPU TensorFlow); run the CLI and the whole pipeline in it
	SHARED=$(abspath $(SHARED)) images/image-test.sh all

# ----------------------------------------------------------------------------- pipeline
# `make run`: the whole pipeline on this machine (kfp.local) on the shared photos, with `catsdogs
# run`'s defaults (the book's split, 1000/500/500 per class; VGG16 features mode: the backbone runs
# once, each head epoch takes under a second), the transfer branch only: on 2 CPU cores the scratch
# CNN's recipe (100 epochs) takes about 40 min. TRAINERS=both adds it with a CPU budget of
# SCRATCH_EPOCHS=8 (= LOCAL_SCRATCH_EPOCHS in pipelines/local_run.py; about 4 more minutes, ~62%).
# TRAIN_PER_CLASS=, VAL_PER_CLASS=, TEST_PER_CLASS=, TRANSFER_EPOCHS= override the rest.
# `make run-smoke` (or SMOKE=1): the whole graph, both trainers, on 80 photos in about a minute.
SOURCE ?= $(SHARED)/data/dogs-vs-cats/train-6000
VGG16_FILE := $(SHARED)/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
WEIGHTS ?= $(if $(wildcard $(VGG16_FILE)),$(abspath $(VGG16_FILE)),imagenet)
SMOKE ?=
TRAINERS ?= $(if $(SMOKE),both,transfer)
SCRATCH_EPOCHS ?= $(if $(SMOKE),1,8)
RUN_OUTPUT ?= $(OUT)/$(if $(SMOKE),run-smoke,run)
CHAMPION_URI ?= $(RUN_OUTPUT)/champion
SMOKE_ARGS = --train-per-class 20 --val-per-class 10 --test-per-class 10 --transfer-epochs 5
RUN_ARGS = $(if $(SMOKE),$(SMOKE_ARGS)) --trainers $(TRAINERS) --scratch-epochs $(SCRATCH_EPOCHS) \
	$(call given,TRAIN_PER_CLASS,--train-per-class) $(call given,VAL_PER_CLASS,--val-per-class) \
	$(call given,TEST_PER_CLASS,--test-per-class) $(call given,TRANSFER_EPOCHS,--transfer-epochs)
# Cluster: compile options, KFP endpoint (or KFP_HOST in the environment), schedule.
PIPELINE_FILE ?= $(OUT)/pipeline.yaml
ACCELERATOR_TYPE ?= nvidia.com/gpu
ACCELERATOR_COUNT ?= 1
NODE_SELECTOR ?=
TOLERATION ?=
# Argo counts a task's retry window from its first attempt: 24 h outlasts a pre-empted training run.
BACKOFF_MAX_DURATION ?= 86400s
# Each task's own disk (TMPDIR, CATSDOGS_CACHE); Argo keeps a finished run's workflow a week; a run
# is stopped after 48 h (longer than the retry window); an exit handler says how to retry it.
SCRATCH_STORAGE ?= 4Gi
WORKFLOW_TTL ?= 604800
ACTIVE_DEADLINE ?= 172800
RETRY_NOTE ?= 1
# The image of a cluster run: CATSDOGS_IMAGE, else what `make images` recorded (by digest).
ALLOW_TAG ?=
ALLOW_TAG_ARG = $(if $(ALLOW_TAG),--allow-tag)
CLUSTER_IMAGE = $(if $(CATSDOGS_IMAGE),,$(if $(wildcard $(IMAGE_REF)),CATSDOGS_IMAGE="$$(cat $(IMAGE_REF))"))
EXPERIMENT ?= catsdogs
CRON ?= 0 3 * * 1
# Where the run's artifacts go (gs://, s3:// or minio://; empty: the server's default root) and the
# service account of its pods (empty: the profile's default-editor or the cluster's default).
PIPELINE_ROOT ?=
SERVICE_ACCOUNT ?=
# The namespace Kubeflow Pipelines itself runs in; your profile namespace is KFP_NAMESPACE.
KFP_SYSTEM_NAMESPACE ?= kubeflow
CLUSTER_ARGS = --package $(PIPELINE_FILE) --experiment $(EXPERIMENT) $(if $(KFP_HOST),--host $(KFP_HOST)) \
	--kfp-namespace $(KFP_SYSTEM_NAMESPACE) $(if $(PIPELINE_ROOT),--pipeline-root "$(PIPELINE_ROOT)") \
	$(if $(SERVICE_ACCOUNT),--service-account "$(SERVICE_ACCOUNT)")
# Cluster runs use the pipeline's own defaults (1000/500/500 per class, 100/30 epochs) for every
# parameter not set on the command line or in the environment.
given = $(if $(filter command line environment,$(origin $(1))),$(2) "$($(1))")
CLUSTER_PARAMS = $(call given,TRAIN_PER_CLASS,--train-per-class) \
	$(call given,VAL_PER_CLASS,--val-per-class) $(call given,TEST_PER_CLASS,--test-per-class) \
	$(call given,SCRATCH_EPOCHS,--scratch-epochs) $(call given,TRANSFER_EPOCHS,--transfer-epochs) \
	$(call given,TRAINERS,--trainers) $(call given,WEIGHTS,--transfer-weights) \
	$(call given,CHAMPION_URI,--champion-uri) $(call given,CHECKPOINT_ROOT,--checkpoint-root)

run: ## The main job: the pipeline locally (kfp.local), 1000/500/500 photos per class, VGG16 features (TRAINERS=both adds the scratch CNN)
	nice -n 10 $(BIN)/catsdogs run --source "$(SOURCE)" --output $(RUN_OUTPUT) $(RUN_ARGS) \
		--transfer-weights "$(WEIGHTS)" --champion-uri "$(CHAMPION_URI)"

run-smoke: ## The same graph on 80 photos in about a minute (wiring check, not a result; = make run SMOKE=1)
	$(MAKE) --no-print-directory run SMOKE=1

compile: ## Compile the pipeline for a cluster, image by digest from build/image.ref (ACCELERATOR_TYPE=nvidia.com/gpu, NODE_SELECTOR=cloud.google.com/gke-accelerator=nvidia-l4, TOLERATION=, BACKOFF_MAX_DURATION=, SCRATCH_STORAGE=4Gi, WORKFLOW_TTL=, ACTIVE_DEADLINE=, RETRY_NOTE=, ALLOW_TAG=1)
	$(CLUSTER_IMAGE) $(BIN)/catsdogs compile --output $(PIPELINE_FILE) --accelerator-type "$(ACCELERATOR_TYPE)" \
		--accelerator-count $(ACCELERATOR_COUNT) $(if $(NODE_SELECTOR),--node-selector "$(NODE_SELECTOR)") \
		$(if $(TOLERATION),--toleration "$(TOLERATION)") --backoff-max-duration "$(BACKOFF_MAX_DURATION)" \
		--scratch-storage "$(SCRATCH_STORAGE)" --workflow-ttl $(WORKFLOW_TTL) --active-deadline $(ACTIVE_DEADLINE) \
		$(if $(RETRY_NOTE),,--no-retry-note) $(ALLOW_TAG_ARG)

submit-pipeline: compile ## Upload the pipeline (new version if it exists) and start a run (SOURCE=gs://..., KFP_HOST=, PIPELINE_ROOT=, SERVICE_ACCOUNT=)
	$(CLUSTER_IMAGE) $(BIN)/catsdogs submit --source "$(SOURCE)" $(CLUSTER_ARGS) $(CLUSTER_PARAMS) $(ALLOW_TAG_ARG)

schedule: compile ## Create or replace the recurring run of that name (CRON='0 3 * * 1', SOURCE=gs://..., KFP_HOST=, PIPELINE_ROOT=, SERVICE_ACCOUNT=)
	$(CLUSTER_IMAGE) $(BIN)/catsdogs schedule create --source "$(SOURCE)" --cron "$(CRON)" $(CLUSTER_ARGS) \
		$(CLUSTER_PARAMS) $(if $(RETRY_NOTE),,--no-retry-note) $(ALLOW_TAG_ARG)

# The golden file shows a cluster compile: the image by digest (an example digest; the test ignores it).
GOLDEN_IMAGE = $(IMAGE_DEFAULT)@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

golden: ## Regenerate tests/golden/pipeline.yaml after an intended pipeline change (review the diff)
	CATSDOGS_IMAGE=$(GOLDEN_IMAGE) $(BIN)/catsdogs compile --output tests/golden/pipeline.yaml

clean: ## Remove build and run outputs
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache $(OUT)
