"""COCO instance-segmentation data for training: dataset, deterministic sampler, padded targets.

The dataset reads a COCO JSON file with pycocotools. Category ids may be any integers; they are
mapped to contiguous labels ``0..K-1`` in increasing id order (``class_names`` follows that order).
Segmentations may be polygons (one object in several parts is fine), uncompressed RLE (``counts``
a list) or compressed RLE (``counts`` a string). ``iscrowd=1`` objects are not trained on (as in the
official pipeline). Images left without objects are kept as negatives when ``keep_empty`` is True
(fine-tuning on corrected data) and dropped otherwise (the official COCO setting).

Which image and which augmentation a training step sees is a pure function of
``(seed, iteration, rank)`` (:class:`IterationBatchSampler`), so a resumed run replays exactly.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from fastinst.images import load_image

from .augment import AugmentConfig, augment

Sample = Dict[str, object]


def load_coco(json_path: str | Path) -> COCO:
    """Load a COCO annotation file quietly (pycocotools prints progress to stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(json_path))


def segmentation_to_rle(segm: object, height: int, width: int) -> Dict[str, object]:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) -> one compressed RLE."""
    if isinstance(segm, list):
        polygons = [p for p in segm if len(p) >= 6]
        if not polygons:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, *segm["size"])
    if isinstance(segm, dict) and "counts" in segm:
        return segm
    raise ValueError(f"unsupported segmentation of type {type(segm).__name__}")


def decode_segmentation(segm: object, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation to a bool mask ``(height, width)``; the RLE size must match."""
    rle = segmentation_to_rle(segm, height, width)
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"segmentation size {rle['size']} does not match the image ({height}, {width})")
    return mask_utils.decode(rle).astype(bool)


def read_image(path: Path) -> Tensor:
    """Read an image file as ``(3,H,W)`` uint8 RGB through :func:`fastinst.images.load_image`
    (EXIF orientation, every mode to 8-bit RGB, the pixel limit)."""
    return torch.from_numpy(load_image(path).copy()).permute(2, 0, 1).contiguous()


class CocoInstances(Dataset):
    """A COCO instance dataset; ``dataset[(index, stream_position)]`` gives an augmented sample.

    A sample is ``{"image": (3,H,W) uint8, "labels": (N,) int64, "masks": (N,H,W) bool,
    "image_id": int}``; objects emptied by cropping are removed.
    """

    def __init__(self, json_path: str | Path, image_root: str | Path, *, keep_empty: bool = True,
                 augment_config: Optional[AugmentConfig] = None, seed: int = 0) -> None:
        self.json_path = Path(json_path)
        self.image_root = Path(image_root)
        self.coco = load_coco(json_path)
        self.category_ids: List[int] = sorted(self.coco.getCatIds())
        self.class_names: List[str] = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.label_of: Dict[int, int] = {c: i for i, c in enumerate(self.category_ids)}
        self.augment_config = augment_config
        self.seed = seed
        self.image_ids: List[int] = [i for i in sorted(self.coco.getImgIds()) if keep_empty or self._has_objects(i)]

    def _annotations(self, image_id: int) -> List[dict]:
        anns = self.coco.imgToAnns.get(image_id, [])
        return [a for a in anns if not a.get("iscrowd", 0)]

    def _has_objects(self, image_id: int) -> bool:
        return len(self._annotations(image_id)) > 0

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        """Path of the image at ``index``."""
        return self.image_root / self.coco.imgs[self.image_ids[index]]["file_name"]

    def load_image(self, index: int) -> Tensor:
        """``(3,H,W)`` uint8 image at ``index``; a missing file raises FileNotFoundError naming it."""
        path = self.image_path(index)
        if not path.is_file():
            info = self.coco.imgs[self.image_ids[index]]
            raise FileNotFoundError(
                f"image not found: {path} (file_name {info['file_name']!r}, image id {info['id']}, "
                f"listed in {self.json_path})")
        image = read_image(path)
        info = self.coco.imgs[self.image_ids[index]]
        if "height" in info and (image.shape[1], image.shape[2]) != (info["height"], info["width"]):
            raise ValueError(f"{path} is {image.shape[2]}x{image.shape[1]} (WxH) but the annotations say "
                             f"{info['width']}x{info['height']}")
        return image

    def load(self, index: int) -> Sample:
        """The un-augmented sample at ``index`` (empty masks dropped)."""
        image = self.load_image(index)
        h, w = image.shape[-2:]
        labels, masks = [], []
        for ann in self._annotations(self.image_ids[index]):
            mask = decode_segmentation(ann["segmentation"], h, w)
            if mask.any():
                labels.append(self.label_of[ann["category_id"]])
                masks.append(mask)
        mask_tensor = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.bool)
        return {"image": image, "labels": torch.tensor(labels, dtype=torch.int64), "masks": mask_tensor,
                "image_id": self.image_ids[index]}

    def __getitem__(self, key: int | Tuple[int, int]) -> Sample:
        index, position = key if isinstance(key, tuple) else (key, key)
        sample = self.load(index)
        if self.augment_config is None:
            return sample
        rng = np.random.default_rng([self.seed, position])
        image, masks = augment(sample["image"], sample["masks"], self.augment_config, rng)
        keep = masks.flatten(1).any(1) if masks.shape[0] else torch.zeros(0, dtype=torch.bool)
        return {**sample, "image": image, "masks": masks[keep], "labels": sample["labels"][keep]}


def collate(samples: Sequence[Sample]) -> List[Sample]:
    """Keep a batch as a list of samples (images differ in size; padding happens on the device)."""
    return list(samples)


class IterationBatchSampler(Sampler):
    """Yields, for iterations ``start..max_iters-1``, this rank's keys ``(index, stream_position)``.

    The data is one endless stream of epochs, each a fresh permutation seeded by ``(seed, epoch)``.
    Iteration ``it`` takes stream positions ``it*B .. (it+1)*B - 1`` (``B = local_batch *
    world_size``); rank ``r`` takes its contiguous ``local_batch`` slice of them.
    """

    def __init__(self, num_images: int, local_batch: int, *, seed: int, start_iter: int, max_iters: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_images <= 0:
            raise ValueError("the training set has no images")
        self.n, self.local, self.seed = num_images, local_batch, seed
        self.start, self.stop, self.rank, self.world = start_iter, max_iters, rank, world_size
        self._perm_epoch, self._perm = -1, np.arange(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm_epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def keys(self, iteration: int) -> List[Tuple[int, int]]:
        """The keys this rank loads at ``iteration``."""
        first = (iteration * self.world + self.rank) * self.local
        return [(int(self._permutation(p // self.n)[p % self.n]), p) for p in range(first, first + self.local)]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for it in range(self.start, self.stop):
            yield self.keys(it)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def pad_targets(samples: Sequence[Sample], padded_shape: Tuple[int, int], device: torch.device) -> List[Dict[str, Tensor]]:
    """Targets for the criterion: masks zero-padded (bottom/right) to ``padded_shape``, on ``device``."""
    targets = []
    hp, wp = padded_shape
    for s in samples:
        masks = s["masks"]
        padded = torch.zeros(masks.shape[0], hp, wp, dtype=torch.bool)
        padded[:, : masks.shape[1], : masks.shape[2]] = masks
        targets.append({"labels": s["labels"].to(device), "masks": padded.to(device)})
    return targets
