"""copy_weights_by_name: the optimizer state goes with the weights, or the log says why not."""

from __future__ import annotations

import numpy as np
from catsdogs.components.common.training.augmentation import copy_weights_by_name


def _model(optimizer: str, name: str):
    import keras

    inputs = keras.Input((3,), name="pixels")
    outputs = keras.layers.Dense(1, name="dense")(inputs)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _trained(optimizer: str):
    model = _model(optimizer, "trained")
    x = np.ones((4, 3), "float32")
    model.fit(x, np.ones((4, 1), "float32"), epochs=1, verbose=0)
    return model


def test_the_optimizer_state_is_copied_when_both_optimizers_match() -> None:
    trained, lines = _trained("rmsprop"), []
    copy = copy_weights_by_name(trained, _model("rmsprop", "copy"), lines.append)
    assert lines == []
    for mine, theirs in zip(copy.optimizer.variables, trained.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    np.testing.assert_array_equal(copy.get_weights()[0], trained.get_weights()[0])


def test_an_optimizer_state_that_cannot_be_copied_is_named_with_the_reason() -> None:
    trained, lines = _trained("adam"), []  # adam: two slots per variable, rmsprop: one
    copy = copy_weights_by_name(trained, _model("rmsprop", "copy"), lines.append)
    (line,) = lines
    assert line.startswith("Optimizer state not copied into copy: the trained optimizer holds ")
    assert "the weights are copied" in line
    np.testing.assert_array_equal(copy.get_weights()[0], trained.get_weights()[0])
