"""COCO instance-segmentation data for training: dataset, deterministic sampler, padded targets.

The dataset reads a COCO JSON file through the project's one COCO reader
(:mod:`annotations.coco_parse`): faulty polygons are repaired or refused there, by name, and never
reach pycocotools raw; images whose file has another size than the JSON says are left out
(``dataset.report`` lists every finding). Category ids may be any integers; they are mapped to
contiguous labels ``0..K-1`` in increasing id order (``class_names`` follows that order).
``iscrowd=1`` objects are not trained on (as in the official pipeline). A file that cannot be
decoded when a sample is drawn (truncated or corrupt; the reader checks headers only) is named on
stderr and skipped: the next image's sample is given instead (:meth:`CocoInstances.readable`). Images without any
annotation are kept as negatives when ``keep_empty`` is True (fine-tuning on corrected data: a
person reviewed them and found no object) and dropped otherwise (the official COCO setting);
images whose only annotations are crowd regions are always dropped (a crowd region is objects,
not background: detectron2's ``filter_empty_annotations``, which the official FastInst uses, drops
them too).

Which image and which augmentation a training step sees is a pure function of
``(seed, iteration, rank)`` (:class:`IterationBatchSampler`), so a resumed run replays exactly.
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from annotations.coco_parse import ParsedCoco, read_coco
from annotations.errors import CocoFormatError
from fastinst.errors import ImageError
from fastinst.images import load_image

from .augment import AugmentConfig, augment, copy_paste

Sample = Dict[str, object]


def load_coco(json_path: str | Path, image_root: str | Path | None = None, *, strict: bool = False) -> COCO:
    """A COCO file read by the one reader (:func:`annotations.coco_parse.read_coco`: repairs and
    refusals, string ids mapped) as a pycocotools ``COCO`` of what was accepted (RLE masks)."""
    return coco_from_parsed(read_coco(json_path, image_root, strict=strict))


def coco_from_parsed(parsed: ParsedCoco) -> COCO:
    """A pycocotools ``COCO`` index of a read file (integer ids, RLE segmentations, area and bbox
    from the masks), built without pycocotools printing to stdout."""
    coco = COCO()
    coco.dataset = parsed.to_coco_dict()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read_image(path: Path) -> Tensor:
    """Read an image file as ``(3,H,W)`` uint8 RGB through :func:`fastinst.images.load_image`
    (EXIF orientation, every mode to 8-bit RGB, the pixel limit)."""
    return torch.from_numpy(load_image(path).copy()).permute(2, 0, 1).contiguous()


def _require_a_class(parsed: ParsedCoco, name: str) -> None:
    """A model learns or is scored on classes: a file none of whose categories could be used (an
    empty list, or every id claimed by entries of different names) is refused in one line naming the
    first refusal, not left to fail inside the model.

    Raises:
        CocoFormatError: no usable category.
    """
    if parsed.categories:
        return
    refused = [str(f) for f in parsed.report.refused if f.where.startswith("categories[")]
    why = f"; the first: {refused[0]}" if refused else " (its 'categories' list is empty)"
    raise CocoFormatError(f"{name}: none of its categories could be used, and a model needs at least one class{why}")


class CocoInstances(Dataset):
    """A COCO instance dataset; ``dataset[(index, stream_position)]`` gives an augmented sample.

    A sample is ``{"image": (3,H,W) uint8, "labels": (N,) int64, "masks": (N,H,W) bool,
    "image_id": int}``; objects emptied by cropping are removed. With ``copy_paste`` > 0 that share
    of the augmented samples also gets objects of another augmented training image pasted in
    (:func:`training.augment.copy_paste`).
    """

    def __init__(self, json_path: str | Path, image_root: str | Path, *, keep_empty: bool = True,
                 augment_config: Optional[AugmentConfig] = None, seed: int = 0, strict: bool = False,
                 copy_paste: float = 0.0) -> None:
        self.copy_paste = copy_paste
        self.json_path = Path(json_path)
        self.image_root = Path(image_root)
        self.parsed = read_coco(json_path, image_root, strict=strict)
        self.report = self.parsed.report
        _require_a_class(self.parsed, self.json_path.name)
        self.coco = coco_from_parsed(self.parsed)
        self.category_ids: List[int] = sorted(self.coco.getCatIds())
        self.class_names: List[str] = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.label_of: Dict[int, int] = {c: i for i, c in enumerate(self.category_ids)}
        self.augment_config = augment_config
        self.seed = seed
        self.image_ids: List[int] = [i for i in sorted(self.coco.getImgIds()) if self._has_objects(i) or (
            keep_empty and not self.coco.imgToAnns.get(i))]
        self.unreadable: set[int] = set()   # indices whose file failed to load (this process)

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
            mask = mask_utils.decode({"size": [h, w], "counts": ann["segmentation"]["counts"]}).astype(bool)
            if mask.any():
                labels.append(self.label_of[ann["category_id"]])
                masks.append(mask)
        mask_tensor = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, h, w, dtype=torch.bool)
        return {"image": image, "labels": torch.tensor(labels, dtype=torch.int64), "masks": mask_tensor,
                "image_id": self.image_ids[index]}

    def readable(self, index: int) -> Sample:
        """:meth:`load` of ``index``, or, when its file cannot be read or decoded (truncated or
        corrupt since the file was listed), of the next readable image: the file is named on stderr
        once per process and not tried again, and training goes on.

        Raises:
            ImageError: no image of the dataset can be read.
        """
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            if candidate in self.unreadable:
                continue
            try:
                return self.load(candidate)
            except (ImageError, FileNotFoundError) as error:
                self.unreadable.add(candidate)
                print(f"warning: skipped {self.image_path(candidate)} (image id {self.image_ids[candidate]} of "
                      f"{self.json_path.name}): {error}; training goes on without it", file=sys.stderr)
        raise ImageError(f"none of the {len(self)} images of {self.json_path.name} can be read (see the warnings)")

    def __getitem__(self, key: int | Tuple[int, int]) -> Sample:
        index, position = key if isinstance(key, tuple) else (key, key)
        if self.augment_config is None:
            return self.readable(index)
        sample = self.augmented(index, np.random.default_rng([self.seed, position]))
        rng = np.random.default_rng([self.seed, position, 1])
        if self.copy_paste and len(self) > 1 and rng.random() < self.copy_paste:
            other = int(rng.integers(0, len(self) - 1))
            source = self.augmented(other + (other >= index), rng)
            image, masks, labels = copy_paste(sample["image"], sample["masks"], sample["labels"], source["image"],
                                              source["masks"], source["labels"], rng)
            sample = {**sample, "image": image, "masks": masks, "labels": labels}
        return sample

    def augmented(self, index: int, rng: np.random.Generator) -> Sample:
        """The sample at ``index`` (or the next readable one, :meth:`readable`) through the training
        augmentation drawn from ``rng``."""
        sample = self.readable(index)
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
