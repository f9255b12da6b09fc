"""The settings of a preparation: how to split and encode the dataset."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from catsdogs.components.common.errors import SettingsError


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """How to split and encode the dataset.

    By default each class gets ``train_per_class``/``val_per_class``/``test_per_class`` images (the
    classic 1000/500/500 experiment). When ``val_fraction`` or ``test_fraction`` is above 0, the
    split uses fractions of all valid images of each class instead and train gets the rest.

    Raises:
        SettingsError: A value is out of range, or the fractions do not fit together.
    """

    train_per_class: int = 1000
    val_per_class: int = 500
    test_per_class: int = 500
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    seed: int = 1337
    max_side: int = 256
    jpeg_quality: int = 95
    workers: int = 0  # 0: all cores
    sha256: str = ""  # expected sha256 of a downloaded (http/https) source; "" skips the check

    def __post_init__(self) -> None:
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SettingsError(f"{name} must be in [0, 1), got {value}.")
        if self.use_fractions:
            if self.val_fraction <= 0 or self.test_fraction <= 0:
                raise SettingsError(
                    "val_fraction and test_fraction must both be above 0 when splitting by "
                    f"fractions, got val_fraction={self.val_fraction}, "
                    f"test_fraction={self.test_fraction}."
                )
            if self.val_fraction + self.test_fraction >= 1.0:
                raise SettingsError(
                    "val_fraction + test_fraction must be below 1 (train gets the rest), got "
                    f"{self.val_fraction} + {self.test_fraction}."
                )
        if not 32 <= self.max_side <= 4096:
            raise SettingsError(f"max_side must be in [32, 4096] pixels, got {self.max_side}.")
        if not 1 <= self.jpeg_quality <= 100:
            raise SettingsError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}.")
        if self.workers < 0:
            raise SettingsError(f"workers must be 0 (all cores) or more, got {self.workers}.")
        if self.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise SettingsError(f"sha256 must be 64 hex digits, got {self.sha256!r}.")

    @property
    def use_fractions(self) -> bool:
        """Whether the split is by fractions rather than per-class counts."""
        return self.val_fraction > 0 or self.test_fraction > 0

    def settings(self) -> dict[str, Any]:
        """The settings that determine the output (recorded in the manifest)."""
        split: dict[str, Any] = (
            {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
            if self.use_fractions
            else {
                "train_per_class": self.train_per_class,
                "val_per_class": self.val_per_class,
                "test_per_class": self.test_per_class,
            }
        )
        return {
            **split,
            "seed": self.seed,
            "max_side": self.max_side,
            "jpeg_quality": self.jpeg_quality,
        }
