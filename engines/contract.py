"""The contract every query-based model of the project meets: what a predictor takes and gives.

The studio, the training code and the CLIs use a model only through these types, so a third
query-based model is a new package with a ``Predictor`` that returns :class:`Prediction` and an
explanation meeting :class:`Explanation`, plus one line in :data:`engines.load.MODELS`.

This module imports no model: ``fastinst`` and ``queryinst`` import it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Explanation(Protocol):
    """Why the model predicted what it did, from the forward pass of the prediction.

    A model refines every query over ``num_layers`` steps (FastInst: the initial head and one head
    per decoder layer; QueryInst: its stages). ``model`` names the model ("fastinst", "queryinst")
    so that a view can show what only that model has (FastInst's instance-activation map,
    QueryInst's proposal boxes).
    """

    model: str

    @property
    def num_layers(self) -> int: ...

    def layer_titles(self) -> List[str]:
        """One short title per layer, e.g. "after layer 2" or "stage 3"."""

    def layer_masks(self, query: int) -> np.ndarray:
        """``(num_layers,H,W)`` bool: the query's mask after every layer, at image size."""

    def layer_boxes(self, query: int) -> Optional[np.ndarray]:
        """``(num_layers,4)`` float32 xyxy image pixels: the query's box after every layer, or
        None for a model that predicts no boxes."""


@dataclass
class Prediction:
    """Instances of one image, sorted by score (descending), at the original image size.

    masks: (N,H,W) bool. scores: (N,) float32. classes: (N,) int64, index into ``class_names``.
    boxes: (N,4) float32 xyxy in pixels (x to the right, y down): the model's box where it predicts
    one (QueryInst), else the mask's bounding box with exclusive right/bottom edges (FastInst).
    query_indices: (N,) int64, the query that produced each instance (one query may give several
    instances with different classes). explanation: from the same forward pass, or None when the
    predictor was asked for none.
    """

    masks: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    query_indices: np.ndarray
    class_names: List[str]
    explanation: Any

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def image_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the image, in pixels."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def filter(self, min_score: float) -> "Prediction":
        """The instances scoring at least ``min_score`` (no model run)."""
        keep = self.scores >= min_score
        return replace(self, masks=self.masks[keep], scores=self.scores[keep], classes=self.classes[keep],
                       boxes=self.boxes[keep], query_indices=self.query_indices[keep])


@runtime_checkable
class Predictor(Protocol):
    """Images in, :class:`Prediction` out. An image is a path, a PIL image or an ``(H,W,3)`` uint8
    RGB array; a bad one raises :class:`fastinst.errors.ImageError` naming it."""

    model: torch.nn.Module
    class_names: List[str]
    device: torch.device

    @property
    def num_layers(self) -> int:
        """How many layers its explanations hold (``Explanation.num_layers``)."""

    def predict(self, image: Any, min_score: float = 0.0) -> Prediction:
        """The image's instances scoring at least ``min_score`` (the same as ``.filter(min_score)``)."""

    def predict_batch(self, images: Sequence[Any], min_score: float = 0.0) -> List[Prediction]: ...

    def prepare(self, image: Any) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The image read and resized with the model's test rule: ``((3,h,w) uint8 RGB, original
        (H, W))``. Needs no model run, so a data loader's worker processes can call it."""

    def predict_prepared(self, prepared: Sequence[Tuple[torch.Tensor, Tuple[int, int]]],
                         min_score: float = 0.0) -> List[Prediction]:
        """Outputs of :meth:`prepare` -> one :class:`Prediction` each."""


def same_size_groups(prepared: Sequence[Tuple[torch.Tensor, Tuple[int, int]]]) -> List[List[int]]:
    """Indices of prepared images ``(tensor (3,h,w), original size)`` grouped by resized size
    ``(h, w)``, in first-seen order: one forward pass per group, so that an image's result does not
    depend on which other images shared its batch (a batch is padded to its largest image, which
    changes what the network sees) beyond float rounding."""
    groups: dict = {}
    for i, (tensor, _) in enumerate(prepared):
        groups.setdefault(tuple(tensor.shape[-2:]), []).append(i)
    return list(groups.values())


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N,H,W)`` bool -> ``(N,4)`` float32 xyxy: the first column/row holding the mask and one past
    the last (so a one-pixel mask at (x, y) gives ``(x, y, x+1, y+1)``); an empty mask gives zeros."""
    if masks.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.float32)
    cols = masks.any(1)                                   # (N,W)
    rows = masks.any(2)                                   # (N,H)
    width, height = cols.shape[1], rows.shape[1]
    x0 = cols.float().argmax(1)
    y0 = rows.float().argmax(1)
    x1 = width - cols.flip(1).float().argmax(1)
    y1 = height - rows.flip(1).float().argmax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(cols.any(1, keepdim=True), boxes, torch.zeros_like(boxes))
