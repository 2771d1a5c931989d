"""The three-way split of reviewed images: fixed per image, so it never moves between runs.

- ``train``: what a fine-tuning run learns from;
- ``val`` (validation): what chooses, and only that: early stopping and the checkpoint kept;
- ``test``: what a run reports (before and after, with intervals) and nothing else; no decision
  of the training loop reads it, so its figures are not flattered by having picked anything.

An image gets its split the first time it takes part in a run and keeps it (stored in the
annotation store's ``image_splits``). New images are taken in the order of the SHA-256 of their
key (content hash, else file name), so the choice depends on the images, not on the order they
were reviewed in. Each new image goes to ``test`` while that keeps the test count at
``TEST_FRACTION`` (rounded half up) of all the images assigned so far, and at least one from the
second image on; else to ``val`` by the same rule with ``VAL_FRACTION`` (at least one from the
third image on); else to ``train``. So two reviewed images give one training and one test image
(no validation: the run trains its fixed schedule and keeps its last model, nothing is chosen),
three or more give all three splits. Images with the same key (the same picture under two names)
always share a side: a test image the model trained on under another name would make the test AP
a training AP.

Why these fractions: a run may only call its model better when the gain's interval over the test
images excludes zero, and with fewer than ``MIN_TEST_IMAGES`` test images no interval can honestly
do so (see :data:`MIN_TEST_IMAGES`); 30 % gives six test images from 20 reviewed ones (the
"few dozen corrections" the studio is built for), at the price of training on fewer images.

Stores made before the three-way split held out 20 % of their images as ``heldout``: those were
never trained on, and migration 0005 makes them ``test`` images (they chose an older run's
checkpoint, so a parent version from that run is, if anything, flattered on them: the bias works
against claiming a gain, not for it). Their ``train`` images stay ``train``; new images fill
``test`` and ``val`` up to their fractions first.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, Mapping

TRAIN, VAL, TEST = "train", "val", "test"
TEST_FRACTION = 0.3
VAL_FRACTION = 0.15
# A sign test (the weakest assumption: only whether the new model did better on each image) cannot
# reject "no difference" at the 5% level on n images when 2 * 0.5**n >= 0.05, i.e. n <= 5, even if
# the new model is better on every one of them; the percentile bootstrap is too narrow there.
MIN_TEST_IMAGES = 6


def image_key(record: Any) -> str:
    """What makes two images the same picture for the split: the content hash, else the file name
    (``record``: an ``ImageRecord``)."""
    return record.content_hash or record.file_name


def _target(fraction: float, total: int, minimum_from: int) -> int:
    """How many of ``total`` images a split of ``fraction`` should hold (half up; at least one
    once ``total >= minimum_from``)."""
    return max(math.floor(fraction * total + 0.5), int(total >= minimum_from))


def choose_splits(keys: Mapping[int, str], existing: Mapping[int, str],
                  assigned_keys: Mapping[int, str] | None = None) -> Dict[int, str]:
    """Splits for the images of ``keys`` (image id -> key) that ``existing`` (image id -> split)
    does not have; an image whose key an image of ``existing`` has (``assigned_keys``: the keys of
    those images, by default looked up in ``keys``) or an earlier new image has gets that image's
    side.

    Returns image id -> "train", "val" or "test" for the new images only.
    """
    counts = {side: sum(s == side for s in existing.values()) for side in (TRAIN, VAL, TEST)}
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
        if counts[TEST] < _target(TEST_FRACTION, total, 2):
            side = TEST
        elif counts[VAL] < _target(VAL_FRACTION, total, 3):
            side = VAL
        else:
            side = TRAIN
        counts[side] += 1
        out[image_id] = side_of[keys[image_id]] = side
    return out


def reviewed_images_for(extra_test_images: int) -> int:
    """About how many more reviewed images bring ``extra_test_images`` more test images (in the
    long run a fraction ``TEST_FRACTION`` of new images goes to the test split)."""
    return max(0, math.ceil(extra_test_images / TEST_FRACTION))
