"""The held-out split of reviewed images: fixed per image, so it never moves between runs.

An image gets its split the first time it takes part in a run and keeps it (stored in the
annotation store's ``image_splits``). New images are taken in the order of the SHA-256 of their
key (content hash, else file name), so the choice depends on the images, not on the order they
were reviewed in; each is held out when that keeps the held-out count at ``fraction`` (rounded
half up) of all the images assigned so far, and at least one from the second image on (so two
reviewed images give one of each). Images with the same key (the same picture under two names)
always share a side: a held-out image the model trained on under another name would make the
held-out AP a training AP.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, Mapping

HELDOUT_FRACTION = 0.2


def image_key(record: Any) -> str:
    """What makes two images the same picture for the split: the content hash, else the file name
    (``record``: an ``ImageRecord``)."""
    return record.content_hash or record.file_name


def choose_splits(keys: Mapping[int, str], existing: Mapping[int, str],
                  fraction: float = HELDOUT_FRACTION, assigned_keys: Mapping[int, str] | None = None) -> Dict[int, str]:
    """Splits for the images of ``keys`` (image id -> key) that ``existing`` does not have; an
    image whose key an image of ``existing`` has (``assigned_keys``: the keys of those images, by
    default looked up in ``keys``) or an earlier new image has gets that image's side.

    Returns image id -> "train" or "heldout" for the new images only.
    """
    heldout = sum(s == "heldout" for s in existing.values())
    total = len(existing)
    known = {**keys, **(assigned_keys or {})}
    side_of = {known[i]: side for i, side in existing.items() if i in known}
    new = sorted((i for i in keys if i not in existing), key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
    out: Dict[int, str] = {}
    for image_id in new:
        if keys[image_id] in side_of:
            out[image_id] = side_of[keys[image_id]]
            continue
        total += 1
        if heldout < max(math.floor(fraction * total + 0.5), int(total >= 2)):
            out[image_id] = "heldout"
            heldout += 1
        else:
            out[image_id] = "train"
        side_of[keys[image_id]] = out[image_id]
    return out
