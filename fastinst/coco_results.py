"""COCO results format (``[{image_id, category_id, segmentation (RLE), score, bbox, area}]``)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> Dict[str, object]:
    """``(H,W)`` bool -> compressed COCO RLE with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def to_coco_results(masks: np.ndarray, scores: np.ndarray, classes: np.ndarray, image_id: int,
                    category_ids: Sequence[int]) -> List[Dict[str, object]]:
    """One image's instances -> COCO result dicts; ``category_ids[c]`` maps class index to COCO id."""
    results = []
    for mask, score, cls in zip(masks, scores, classes):
        rle = encode_mask(mask)
        results.append({
            "image_id": int(image_id),
            "category_id": int(category_ids[int(cls)]),
            "segmentation": rle,
            "score": float(score),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "area": float(mask_utils.area(rle)),
        })
    return results
