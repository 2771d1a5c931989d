"""Predictor: images in, instance masks and their explanation out, from one forward pass.

The explanation keeps the low-resolution tensors of the pass that made the prediction (the IA
head's class probabilities, the selected query positions, every head's mask logits) and maps them
to image coordinates on demand, with the same post-processing as the final masks.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from engines import contract

from .checkpoint import load_checkpoint
from .cuda import AcceleratedForward, CudaConfig, to_device
from .errors import FastInstError
from .placed_queries import decode_with_placed, placed_instances, points_to_indices
from .fast import optimize_for_inference, prepare_batch
from .model import FastInst, upsample_masks
from .onnx_export import OnnxForward
from .images import ImageLike, load_image
from .postprocess import (Instances, MaskResize, instance_inference, instance_inference_lowres, panoptic_inference,
                          semantic_inference)
from .transforms import resize_shortest_edge

BACKENDS = ("torch", "onnxruntime")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises :class:`~fastinst.errors.FastInstError` for a CUDA device on a machine without one."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FastInstError(f"device {device!r}: this machine has no CUDA device; use 'cpu' or 'auto'")
    return resolved


@dataclass
class Geometry:
    """How model coordinates map to the original image.

    padded: (Hp, Wp) model input size; resized: (h, w) the resized image inside it;
    original: (H, W) the image as given.
    """

    padded: Tuple[int, int]
    resized: Tuple[int, int]
    original: Tuple[int, int]

    def to_image(self, maps: torch.Tensor) -> torch.Tensor:
        """``(N,h,w)`` maps over the padded input -> ``(N,H,W)`` at the original size (the official
        bilinear resize, computed as :class:`MaskResize` does for the instance masks)."""
        return self.resize(tuple(maps.shape[-2:]))(maps.float())

    def resize(self, low_size: Tuple[int, int]) -> MaskResize:
        """The official resize of ``low_size`` maps to the original image size (built once per sizes)."""
        return _official_resize(tuple(low_size), self.padded, self.resized, self.original)


@functools.lru_cache(maxsize=64)
def _official_resize(low_size: Tuple[int, int], padded: Tuple[int, int], resized: Tuple[int, int],
                     original: Tuple[int, int]) -> MaskResize:
    """:meth:`MaskResize.official`, cached: a folder or a studio session has few distinct sizes."""
    return MaskResize.official(low_size, padded, resized, original)


@dataclass
class Explanation:
    """Why the model predicted what it did, from the forward pass of the prediction.

    class_probs: (K+1,h16,w16) softmax of the IA head (index K = background).
    query_indices: (Q,) flat positions of the selected queries in the h16 x w16 map.
    query_points: (Q,2) (x, y) centres of those positions in original-image pixels.
    head_mask_logits: (L+1,Q,h8,w8) mask logits of every prediction head (0 = initial queries).
    class_logits: (Q,K+1) the final head's class logits.
    num_placed: how many of the ``Q`` queries (the last ones) were placed by a person
        (:meth:`Predictor.place_queries`); 0 for a plain prediction.
    """

    model = "fastinst"
    class_probs: torch.Tensor
    query_indices: torch.Tensor
    query_points: np.ndarray
    head_mask_logits: torch.Tensor
    class_logits: torch.Tensor
    geometry: Geometry
    num_placed: int = 0

    @property
    def num_layers(self) -> int:
        """Number of prediction heads (decoder layers + 1)."""
        return int(self.head_mask_logits.shape[0])

    def activation(self, class_id: Optional[int] = None) -> np.ndarray:
        """``(H,W)`` float32 in [0,1]: foreground probability (1 - background), or one class's."""
        probs = 1.0 - self.class_probs[-1] if class_id is None else self.class_probs[class_id]
        return self.geometry.to_image(probs[None])[0].clamp_(0, 1).numpy()

    def layer_mask(self, query: int, head: int) -> np.ndarray:
        """``(H,W)`` bool: query ``query``'s mask predicted by head ``head``."""
        logits = self.geometry.to_image(self.head_mask_logits[head, query][None])[0]
        return (logits.sigmoid() > 0.5).numpy()

    def layer_masks(self, query: int) -> np.ndarray:
        """``(L+1,H,W)`` bool: the query's mask after every head."""
        logits = self.geometry.to_image(self.head_mask_logits[:, query])
        return (logits.sigmoid() > 0.5).numpy()

    def layer_titles(self) -> List[str]:
        """Head 0 is the queries' mask before any decoder layer, head L the final one."""
        titles = ["queries (head 0)"] + [f"after layer {k}" for k in range(1, self.num_layers)]
        if self.num_layers > 1:
            titles[-1] += " = final"
        return titles

    def layer_boxes(self, query: int) -> None:
        """FastInst predicts no boxes (the contract's ``None``)."""
        return None


@dataclass
class Prediction(contract.Prediction):
    """:class:`engines.contract.Prediction` (``boxes`` are the masks' bounding boxes), plus the semantic
    and panoptic readings of the same pass."""

    def semantic(self) -> np.ndarray:
        """``(H,W)`` int64 class map from the same pass (official semantic inference, then arg-max)."""
        exp = self.explanation
        scores = semantic_inference(exp.class_logits, exp.geometry.to_image(exp.head_mask_logits[-1]))
        return scores.argmax(0).numpy()

    def panoptic(self, thing_classes: Sequence[int], object_mask_threshold: float = 0.8,
                 overlap_threshold: float = 0.8) -> Tuple[np.ndarray, List[dict]]:
        """``((H,W) int32 segment ids, segments_info)`` from the same pass (official panoptic rules)."""
        exp = self.explanation
        seg, info = panoptic_inference(exp.class_logits, exp.geometry.to_image(exp.head_mask_logits[-1]),
                                       thing_classes, object_mask_threshold, overlap_threshold)
        return seg.numpy(), info


class Predictor:
    """Runs a :class:`FastInst` on images with the official test-time pipeline.

    Args:
        model: the network (put in eval mode and moved to ``device``).
        class_names: one name per class.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        topk: instances kept per image (official: 100).
        fast: the fast path (default): a copy of ``model`` with norms folded into the convolutions
            and channels-last weights (:func:`fastinst.fast.optimize_for_inference`), and instance
            masks resized only inside their boxes (:func:`~fastinst.postprocess.instance_inference_lowres`).
            Same outputs within float32 rounding. The copy follows ``model``: weights loaded or
            trained into ``model`` later are copied again before the next prediction. ``False``:
            the straightforward official computation on ``model`` itself (the baseline of
            ``benchmarks/bench_engine.py``).
        cuda: GPU options of the fast path (autocast, compiled size buckets with CUDA graphs; see
            :mod:`fastinst.cuda`); ignored on CPU. None: the fast path in float32, eager.
        backend: ``"torch"`` (default) or ``"onnxruntime"``: the fast path's network exported to ONNX
            and run by onnxruntime on CPU (:class:`fastinst.onnx_export.OnnxForward`; one export per
            input size, on first use), then the same post-processing. Same outputs within float32
            rounding. Needs ``fast=True`` and a CPU device (``"auto"`` picks the CPU).
        feature_cache: how many images' pixel-decoder maps are kept (least recently predicted
            dropped first) so that :meth:`place_queries` on an image just predicted costs only
            the decoder and heads. About ``3 * 256 * H * W / 64 * 4`` bytes per image (11 MB at
            640x853); 0 keeps none. The onnxruntime graph does not output the maps: with that
            backend a click runs the torch network first.
        explain: keep the explanation (False: ``Prediction.explanation`` is None, as evaluation wants).

    Raises ``ValueError`` on a class-name count that does not match the model, an unknown backend,
    or onnxruntime with ``fast=False`` or a CUDA device.
    """

    def __init__(self, model: FastInst, class_names: Sequence[str], *, device: str | torch.device = "auto",
                 topk: int = 100, fast: bool = True, cuda: Optional[CudaConfig] = None,
                 backend: str = "torch", feature_cache: int = 4,
                 explain: bool = True) -> None:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.device = torch.device("cpu") if backend == "onnxruntime" and str(device) == "auto" else resolve_device(device)
        if backend == "onnxruntime" and (not fast or self.device.type != "cpu"):
            raise ValueError("the onnxruntime backend runs the fast path on the CPU: use fast=True, device='cpu'")
        model = model.to(self.device).eval()
        self.fast = fast
        self.backend = backend
        self._cuda = cuda
        self._build(model)
        self.class_names = list(class_names)
        self.topk = topk
        self.feature_cache = feature_cache
        self._features: "OrderedDict[str, Tuple[List[torch.Tensor], Geometry]]" = OrderedDict()
        self._features_lock = threading.Lock()
        self.explain = explain

    def _build(self, model: FastInst) -> None:
        """The network that runs: ``model`` itself, or its fast copy (and the onnxruntime or GPU
        forward made from that copy), remembering which weights it was made from (a weak
        reference: a model only this Predictor knew is not kept beside its copy)."""
        self._source = weakref.ref(model)
        self._source_versions = _tensor_versions(model)
        self.model = optimize_for_inference(model) if self.fast else model
        self.onnx = OnnxForward(optimize_for_inference(model, channels_last=False)) if self.backend == "onnxruntime" else None
        self.accelerated = AcceleratedForward(self.model, self._cuda) if self.fast and self._cuda is not None else None

    def _follow_source(self) -> None:
        """Rebuild the fast copy when the model's weights changed since it was made (weights loaded
        or trained after the Predictor was built), so that the fast path never predicts with stale
        weights while ``fast=False`` would use the new ones."""
        source = self._source() if self.fast else None
        if source is not None and _tensor_versions(source) != self._source_versions:
            self._build(source)
            with self._features_lock:
                self._features.clear()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto", **kwargs) -> "Predictor":
        """Load one of our checkpoints (see :mod:`fastinst.checkpoint`); ``kwargs`` as the constructor's."""
        model, info = load_checkpoint(path)
        return cls(model, info.class_names, device=device, **kwargs)

    @property
    def num_layers(self) -> int:
        """Layers of the explanation: the initial head and one per decoder layer."""
        return len(self.model.decoder.heads)

    def prepare(self, image: ImageLike) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Image -> ``((3,h,w) uint8 RGB resized with the official rule, original (H, W))``.

        Raises :class:`~fastinst.errors.ImageError` naming an unreadable file.
        """
        rgb = load_image(image)
        spec = self.model.input_spec
        resized = resize_shortest_edge(rgb, spec.min_size, spec.max_size)
        tensor = torch.from_numpy(resized if resized.flags.writeable else resized.copy()).permute(2, 0, 1)
        return tensor, (int(rgb.shape[0]), int(rgb.shape[1]))

    @torch.inference_mode()
    def predict(self, image: ImageLike, min_score: float = 0.0) -> Prediction:
        """One image (path, PIL image or ``(H,W,3)`` uint8 RGB array) -> :class:`Prediction`.

        ``min_score``: keep only the instances scoring at least this; the same result as
        ``predict(image).filter(min_score)``, faster on the fast path (the masks of instances that
        cannot reach it are never computed; see :func:`~fastinst.postprocess.instance_inference_lowres`).
        """
        return self.predict_prepared([self.prepare(image)], min_score)[0]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[ImageLike], min_score: float = 0.0) -> List[Prediction]:
        """Several images in one forward pass -> one :class:`Prediction` each (``min_score`` as in
        :meth:`predict`).

        The batch is padded to its largest resized image (as the official batched inference), so an
        image's result equals its single-image result only when the batch's images share a padded
        size; :mod:`fastinst.folder_predict` batches images of one size together.
        """
        return self.predict_prepared([self.prepare(image) for image in images], min_score)

    @torch.inference_mode()
    def predict_prepared(self, prepared: Sequence[Tuple[torch.Tensor, Tuple[int, int]]],
                         min_score: float = 0.0) -> List[Prediction]:
        """Outputs of :meth:`prepare` -> predictions (one forward pass for all; ``min_score`` as in
        :meth:`predict`); none for none."""
        if not len(prepared):
            return []
        out, geometries = self._forward(prepared)
        return [self._assemble(out, i, geometry, min_score) for i, geometry in enumerate(geometries)]

    def _forward(self, prepared: Sequence[Tuple[torch.Tensor, Tuple[int, int]]],
                 onnx: bool = True) -> Tuple[dict, List[Geometry]]:
        """The network on prepared images (onnxruntime when that is the backend and ``onnx``);
        each image's pixel-decoder maps, when the output has them, go to the feature cache."""
        self._follow_source()
        batch, sizes = self.model.preprocess([to_device(tensor, self.device) for tensor, _ in prepared])
        if self.onnx is not None and onnx:
            out = self.onnx(batch)
            padded = (int(batch.shape[-2]), int(batch.shape[-1]))
        elif self.accelerated is not None:
            out, padded = self.accelerated(batch)
        else:
            out = self.model(prepare_batch(self.model, batch))
            padded = (int(batch.shape[-2]), int(batch.shape[-1]))
        geometries = [Geometry(padded, size, original) for size, (_, original) in zip(sizes, prepared)]
        for i, ((tensor, _), geometry) in enumerate(zip(prepared, geometries)):
            if "features" in out:
                # a batch's slice is copied so that the cache does not hold the whole batch's maps
                maps = [f[i:i + 1] if f.shape[0] == 1 else f[i:i + 1].clone() for f in out["features"]]
                self._keep_features(image_key(tensor), maps, geometry)
        return out, geometries

    @torch.inference_mode()
    def place_queries(self, image: ImageLike, points: Sequence[Tuple[float, float]], *,
                      with_selected: bool = False) -> Prediction:
        """Queries placed by a person at ``points`` ``(x, y)`` (original-image pixels) -> instances.

        Each point's stride-16 cell gives a query exactly as the IA-guided selection would (same
        feature map, same positional embedding), decoded with the image's selected queries by the
        same layers and heads (:mod:`fastinst.placed_queries`: nothing else changes, and the
        placed queries do not affect each other). The pixel-decoder maps come from the feature
        cache when this image was predicted recently (then a click costs the decoder and the
        heads only); otherwise the image is predicted first.

        Returns a :class:`Prediction` with one instance per point, in the order of ``points`` (not
        sorted; class = arg-max, see :func:`~fastinst.placed_queries.placed_instances`), whose
        ``query_indices`` are ``Q + k`` for point ``k``; or, with ``with_selected``, the selected
        and placed queries' instances together by the usual top-k. The explanation covers the
        ``Q + P`` queries (per-layer masks of the placed ones included).

        Raises:
            ValueError: no point, or a point outside the image.
        """
        if not len(points):
            raise ValueError("place_queries needs at least one (x, y) point")
        self._follow_source()
        tensor, original = self.prepare(image)
        cached = self._cached_features(image_key(tensor))
        if cached is None:
            out, (geometry,) = self._forward([(tensor, original)], onnx=False)
            cached = out["features"], geometry
        features, geometry = cached
        indices = points_to_indices(points, geometry.original, geometry.resized, geometry.padded,
                                    tuple(features[1].shape[-2:])).to(self.device)
        amp = self.accelerated.dtype if self.accelerated is not None else None
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = decode_with_placed(self.model.decoder, features, indices[None])
        if with_selected:
            return self._assemble(out, 0, geometry)
        class_logits = out["pred_logits"][0].float()
        first = class_logits.shape[0] - len(points)
        inst = placed_instances(class_logits[first:], geometry.to_image(out["pred_masks"][0, first:].float()))
        return Prediction(
            masks=inst.masks.cpu().numpy(), scores=inst.scores.cpu().numpy(), classes=inst.classes.cpu().numpy(),
            boxes=contract.mask_boxes(inst.masks).cpu().numpy(),
            query_indices=(inst.query_indices + first).cpu().numpy(), class_names=self.class_names,
            explanation=self._explain(out, 0, geometry, class_logits),
        )

    def _keep_features(self, key: str, features: List[torch.Tensor], geometry: Geometry) -> None:
        if self.feature_cache <= 0:
            return
        with self._features_lock:
            self._features[key] = (features, geometry)
            self._features.move_to_end(key)
            while len(self._features) > self.feature_cache:
                self._features.popitem(last=False)

    def _cached_features(self, key: str) -> Optional[Tuple[List[torch.Tensor], Geometry]]:
        with self._features_lock:
            if key not in self._features:
                return None
            self._features.move_to_end(key)
            return self._features[key]

    def _assemble(self, out: dict, i: int, geometry: Geometry, min_score: float = 0.0) -> Prediction:
        class_logits = out["pred_logits"][i].float()
        if self.fast:
            resize = geometry.resize(tuple(out["pred_masks"].shape[-2:]))
            inst = instance_inference_lowres(class_logits, out["pred_masks"][i], resize, self.topk, min_score)
        else:
            mask_logits = upsample_masks(out["pred_masks"][i].float(), geometry.padded, geometry.resized,
                                         geometry.original)
            inst = instance_inference(class_logits, mask_logits, self.topk)
            keep = inst.scores >= min_score
            inst = Instances(*(getattr(inst, f.name)[keep] for f in fields(Instances) if f.name != "boxes"))
        return Prediction(
            masks=inst.masks.cpu().numpy(), scores=inst.scores.float().cpu().numpy(),
            classes=inst.classes.cpu().numpy(), query_indices=inst.query_indices.cpu().numpy(),
            class_names=self.class_names,
            boxes=(contract.mask_boxes(inst.masks) if inst.boxes is None else inst.boxes).cpu().numpy(),
            explanation=self._explain(out, i, geometry, class_logits) if self.explain else None,
        )

    def _explain(self, out: dict, i: int, geometry: Geometry, class_logits: torch.Tensor) -> Explanation:
        return Explanation(
            class_probs=out["proposal_logits"][i].float().softmax(0).cpu(),
            query_indices=out["query_indices"][i].cpu(),
            query_points=_query_points(out["query_indices"][i].cpu(), out["proposal_logits"].shape[-2:], geometry),
            head_mask_logits=torch.stack([h["pred_masks"][i] for h in out["heads"]]).float().cpu(),
            class_logits=class_logits.cpu(),
            geometry=geometry,
            num_placed=int(out.get("num_placed", 0)),
        )


def _tensor_versions(model: torch.nn.Module) -> tuple:
    """What identifies the weights: every parameter and buffer's identity, in-place version and
    storage (``load_state_dict``, an optimizer step, ``assign=True``, ``p.data = t``), and the
    first element of each (writes through ``p.data``, as EMA updates make, bump no version)."""
    tensors = (*model.parameters(), *model.buffers())
    firsts = torch.cat([t.detach().reshape(-1)[:1].float() for t in tensors]).cpu() if tensors else None
    return (tuple((id(t), t._version, t.data_ptr()) for t in tensors),
            None if firsts is None else firsts.numpy().tobytes())


def image_key(tensor: torch.Tensor) -> str:
    """Content key of a prepared ``(3,h,w)`` uint8 image (size and a BLAKE2 digest of its bytes)."""
    pixels = np.ascontiguousarray(tensor.permute(1, 2, 0).cpu().numpy())
    return f"{tuple(pixels.shape)}:{hashlib.blake2b(pixels, digest_size=16).hexdigest()}"


def _query_points(indices: torch.Tensor, map_size, geometry: Geometry) -> np.ndarray:
    """Where flat positions in the (h16,w16) map are on the original image: the centre of each
    cell's part that covers the picture, in original-image pixels ``(Q,2)`` (x, y), inside the
    image. A cell of the last row or column can reach into the padding below or right of the
    resized picture (a 640x427 photo is 128x85 in a 128x96 input): its centre would be outside
    the image; a cell wholly in padding is put at the picture's edge."""
    height, width = int(map_size[0]), int(map_size[1])
    ys = torch.div(indices, width, rounding_mode="floor").float()
    xs = (indices % width).float()
    stride_y = geometry.padded[0] / height
    stride_x = geometry.padded[1] / width

    def centre(cells: torch.Tensor, stride: float, resized: int, original: int) -> torch.Tensor:
        start = (cells * stride).clamp(max=resized - 1)
        end = ((cells + 1) * stride).clamp(max=resized)
        return ((start + end) / 2 * (original / resized)).clamp(0, original - 0.5)

    points = torch.stack([centre(xs, stride_x, geometry.resized[1], geometry.original[1]),
                          centre(ys, stride_y, geometry.resized[0], geometry.original[0])], dim=-1)
    return points.numpy().astype(np.float32)
