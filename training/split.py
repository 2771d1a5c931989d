"""The held-out split of reviewed images: fixed per image, so it never moves between runs.

An image gets its split the first time it takes part in a run and keeps it (stored in the
annotation store's ``image_splits``). New images are taken in the order of the SHA-256 of their
key (content hash, else file name), so the choice depends on the images, not on the order they
were reviewed in; each is held out when that keeps the held-out count at ``fraction`` (rounded
half up) of all the images assigned so far, and at least one from the second image on (so two
reviewed images give one of each).
"""
from __future__ import annotations

import hashlib
import math
from typing import Dict, Mapping

HELDOUT_FRACTION = 0.2


def choose_splits(keys: Mapping[int, str], existing: Mapping[int, str],
                  fraction: float = HELDOUT_FRACTION) -> Dict[int, str]:
    """Splits for the images of ``keys`` (image id -> key) that ``existing`` does not have.

    Returns image id -> "train" or "heldout" for the new images only.
    """
    heldout = sum(s == "heldout" for s in existing.values())
    total = len(existing)
    new = sorted((i for i in keys if i not in existing), key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
    out: Dict[int, str] = {}
    for image_id in new:
        total += 1
        if heldout < max(math.floor(fraction * total + 0.5), int(total >= 2)):
            out[image_id] = "heldout"
            heldout += 1
        else:
            out[image_id] = "train"
    return out
