"""Predictor: images in, instances and their explanation out, from one forward pass.

The project's contract (:mod:`engines.contract`), as :class:`fastinst.Predictor`: a
:class:`~engines.contract.Prediction` with ``masks``, ``scores``, ``classes``, ``boxes`` (the
model's own) and ``query_indices``, sorted by score. The explanation holds what QueryInst's stages
did in that pass: the learned proposal boxes, every stage's refined box and class scores for every
query, and every stage's own mask (each stage's mask head on that stage's query and refined box,
as in training; the official inference runs only the last).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from engines.contract import Prediction
from fastinst.predictor import resolve_device
from fastinst.images import ImageLike, load_image

from .checkpoint import load_checkpoint
from .model import QueryInst
from .postprocess import instance_inference, paste_masks
from .transforms import resize_keep_ratio


@dataclass
class Explanation:
    """QueryInst's stages for one image (S stages, N queries), in original-image pixels.

    proposal_boxes: (N,4) xyxy, the learned proposals (stage 0's input boxes).
    stage_boxes: (S,N,4) xyxy, the box each stage refined for each query.
    stage_scores: (S,N,K) sigmoid class scores of each stage.
    stage_mask_logits: (S,N,28,28) each stage's mask logits of the query's final class.
    query_classes: (N,) the class whose masks ``stage_mask_logits`` holds (final arg-max).
    """

    model = "queryinst"
    proposal_boxes: np.ndarray
    stage_boxes: np.ndarray
    stage_scores: np.ndarray
    stage_mask_logits: torch.Tensor
    query_classes: np.ndarray
    image_size: Tuple[int, int]

    @property
    def num_layers(self) -> int:
        """Number of stages (the per-layer view's length)."""
        return int(self.stage_boxes.shape[0])

    def box_track(self, query: int) -> np.ndarray:
        """``(S+1,4)`` the query's box from the proposal through every stage."""
        return np.concatenate([self.proposal_boxes[query][None], self.stage_boxes[:, query]], 0)

    def box_motion(self, query: int) -> np.ndarray:
        """``(S,4)`` how each stage moved the query's box (x0, y0, x1, y1 deltas in pixels)."""
        return np.diff(self.box_track(query), axis=0)

    def layer_titles(self) -> List[str]:
        """``stage 1`` .. ``stage S`` (the last one is the final prediction)."""
        titles = [f"stage {k}" for k in range(1, self.num_layers + 1)]
        titles[-1] += " = final"
        return titles

    def layer_boxes(self, query: int) -> np.ndarray:
        """``(S,4)`` float32 xyxy: the query's box after every stage (the contract's per-layer boxes)."""
        return self.stage_boxes[:, query].astype(np.float32)

    def layer_mask(self, query: int, head: int) -> np.ndarray:
        """``(H,W)`` bool: stage ``head``'s mask of ``query``, pasted in that stage's box."""
        box = torch.from_numpy(self.stage_boxes[head, query][None])
        return paste_masks(self.stage_mask_logits[head, query][None].sigmoid(), box, self.image_size)[0].numpy()

    def layer_masks(self, query: int) -> np.ndarray:
        """``(S,H,W)`` bool: the query's mask after every stage."""
        boxes = torch.from_numpy(self.stage_boxes[:, query])
        return paste_masks(self.stage_mask_logits[:, query].sigmoid(), boxes, self.image_size).numpy()


class Predictor:
    """Runs a :class:`QueryInst` on images with the official test pipeline and inference rules.

    Args:
        model: the network (put in eval mode and moved to ``device``).
        class_names: one name per class.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``...
        max_per_img: instances kept (official: the number of proposals).
        explain: also run every stage's mask head for the explanation (costs S-1 more mask heads).
    """

    def __init__(self, model: QueryInst, class_names: Sequence[str], *, device: str | torch.device = "auto",
                 max_per_img: int | None = None, explain: bool = True) -> None:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.class_names = list(class_names)
        self.max_per_img = max_per_img or model.num_proposals
        self.explain = explain

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto", **kwargs) -> "Predictor":
        """Load one of our QueryInst checkpoints (see :mod:`queryinst.checkpoint`)."""
        model, info = load_checkpoint(path)
        return cls(model, info.class_names, device=device, **kwargs)

    @property
    def num_layers(self) -> int:
        """Layers of the explanation: the stages."""
        return int(self.model.num_stages)

    def predict_batch(self, images: Sequence[ImageLike], min_score: float = 0.0) -> List[Prediction]:
        """One :class:`Prediction` per image (one forward pass each: padding a batch to its largest
        image would change the results, as in the official batched inference)."""
        return [self.predict(image, min_score) for image in images]

    def prepare(self, image: ImageLike) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Image -> ``((3,h,w) uint8 RGB resized with the official keep-ratio rule, original (H, W))``.

        Raises :class:`~fastinst.errors.ImageError` naming an unreadable file.
        """
        rgb = load_image(image)
        spec = self.model.input_spec
        resized, _ = resize_keep_ratio(rgb, spec.min_size, spec.max_size)
        return torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1), (int(rgb.shape[0]), int(rgb.shape[1]))

    @torch.inference_mode()
    def predict(self, image: ImageLike, min_score: float = 0.0) -> Prediction:
        """One image (path, PIL image or ``(H,W,3)`` uint8 RGB array) -> :class:`Prediction` of the
        instances scoring at least ``min_score`` (0: all ``max_per_img``, as the official code); the
        masks of the others are never pasted at image size."""
        return self.predict_prepared([self.prepare(image)], min_score)[0]

    @torch.inference_mode()
    def predict_prepared(self, prepared: Sequence[Tuple[torch.Tensor, Tuple[int, int]]],
                         min_score: float = 0.0) -> List[Prediction]:
        """Outputs of :meth:`prepare` -> one :class:`Prediction` each (one forward pass per image,
        as :meth:`predict_batch`)."""
        return [self._predict_one(tensor, original, min_score) for tensor, original in prepared]

    def _predict_one(self, tensor: torch.Tensor, original: Tuple[int, int], min_score: float) -> Prediction:
        height, width = int(tensor.shape[1]), int(tensor.shape[2])
        scale = (width / original[1], height / original[0])   # (w_scale, h_scale), as resize_keep_ratio
        batch, sizes = self.model.preprocess([tensor])
        out = self.model(batch, sizes, mask_stages="all" if self.explain else "last")
        last = out["stages"][-1]
        inst = instance_inference(last["class_logits"][0].float(), last["boxes"][0].float(),
                                  last["mask_logits"][0].float(), scale, original, self.max_per_img,
                                  min_score=min_score)
        explanation = self._explain(out, scale, original) if self.explain else None
        return Prediction(masks=inst.masks.cpu().numpy(), scores=inst.scores.cpu().numpy(),
                          classes=inst.classes.cpu().numpy(), boxes=inst.boxes.cpu().numpy().astype(np.float32),
                          query_indices=inst.query_indices.cpu().numpy(), class_names=self.class_names,
                          explanation=explanation).filter(min_score)

    @staticmethod
    def _explain(out: dict, scale: Tuple[float, float], original: Tuple[int, int]) -> Explanation:
        stages = out["stages"]
        to_image = torch.tensor([scale[0], scale[1], scale[0], scale[1]], device=out["proposal_boxes"].device)
        classes = stages[-1]["class_logits"][0].argmax(1)
        rows = torch.arange(classes.numel(), device=classes.device)
        return Explanation(
            proposal_boxes=(out["proposal_boxes"][0] / to_image).float().cpu().numpy(),
            stage_boxes=torch.stack([s["boxes"][0] / to_image for s in stages]).float().cpu().numpy(),
            stage_scores=torch.stack([s["class_logits"][0].sigmoid() for s in stages]).float().cpu().numpy(),
            stage_mask_logits=torch.stack([s["mask_logits"][0][rows, classes] for s in stages]).float().cpu(),
            query_classes=classes.cpu().numpy(), image_size=original)
