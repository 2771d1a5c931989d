"""Registered model versions as predictors, next to the process's current model.

The Fine-tune view compares a run's parent and result, and the Evaluate view measures any
version; both ask :class:`VersionModels` for predictions. The current model is used through its
slot (and its lock); other versions are loaded from their registered checkpoint on first use and
kept in a small LRU, as are their predictions per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import ConfigError
from app.project import PROPOSAL_FLOOR, Project, StudioError
from app.session import LRUCache, ModelSlot


class VersionModels:
    """Predictions of any registered model version on the project's images."""

    def __init__(self, project: Project, capacity: int = 2, cache_size: int = 256) -> None:
        self.project = project
        self.slots: LRUCache[ModelSlot] = LRUCache(capacity)
        self.predictions: LRUCache[Any] = LRUCache(cache_size)

    def slot(self, name: str) -> ModelSlot:
        """The model of version ``name`` (the current one, or loaded from its checkpoint).

        Raises:
            StudioError: unknown version, missing file, or a file that does not load (e.g. a
                released FastInst checkpoint, whose preset is not recorded).
        """
        if name == self.project.model.version:
            return self.project.model

        def load() -> ModelSlot:
            from app.startup import load_model
            record = self.project.store.model_version(name)
            if record is None or not record.path or not Path(record.path).is_file():
                raise StudioError(f"model version {name!r} has no checkpoint file here")
            try:
                return load_model(Path(record.path), None, str(self.project.model.device))
            except ConfigError as e:
                raise StudioError(f"model version {name!r}: {e}") from None
        return self.slots.get_or_create(name, load)

    def predict(self, name: str, image_id: int) -> Any:
        """``fastinst.Prediction`` of version ``name`` on an image (instances >= PROPOSAL_FLOOR)."""
        if name == self.project.model.version:
            return self.project.prediction(image_id)
        slot = self.slot(name)
        return self.predictions.get_or_create(
            (name, image_id),
            lambda: slot.run(lambda p: p.predict(self.project.pixels(image_id), min_score=PROPOSAL_FLOOR)))

    def preset(self, name: str) -> str:
        """The preset of version ``name``."""
        return str(self.slot(name).preset)
