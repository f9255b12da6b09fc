"""The model folder: the names of the files a trainer writes, and loading the model back.

A model folder (local or gs://), written by train_scratch or train_transfer:

    model.keras      the Keras model; takes raw RGB pixels (preprocessing inside), written last
    history.json     per-epoch metrics
    metrics.json     the trainer's summary (final and best validation figures, time, device)
    curves.png       training curves
    run.json         the run's identity (settings and dataset), for resuming and refusing others

An evaluation folder holds ``evaluation.json`` (never ``metrics.json``, the trainer's summary).
"""

from __future__ import annotations

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
RUN_FILE = "run.json"
EVALUATION_FILE = "evaluation.json"
