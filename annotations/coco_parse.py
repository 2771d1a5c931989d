"""Reading and validating a COCO instances file, without touching the database.

Everything is checked before the importer writes anything: structure and types, duplicate ids and
file names, references to unknown images or categories, polygons outside the image, RLE of the
wrong size or length. The first problem found raises :class:`CocoFormatError` naming the item,
e.g. ``annotation id 17 in images[3] 'a.jpg': polygon point (812.0, 40.0) lies outside the
640x480 image``.

Masks are converted to compressed RLE here (polygons rasterised and merged, uncompressed RLE
compressed) and their area and bbox computed with pycocotools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotations import rle
from annotations.errors import CocoFormatError

IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
CATEGORY_KEYS = frozenset({"id", "name", "supercategory"})
ANNOTATION_KEYS = frozenset(
    {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
)


@dataclass(slots=True)
class ParsedImage:
    """An entry of ``images``; ``index`` is its position in the array (for messages)."""

    index: int
    coco_id: int
    file_name: str
    width: int
    height: int
    extra: dict[str, Any] | None
    content_hash: str | None = None

    @property
    def where(self) -> str:
        return f"images[{self.index}] '{self.file_name}'"


@dataclass(slots=True)
class ParsedCategory:
    """An entry of ``categories``."""

    index: int
    coco_id: int
    name: str
    supercategory: str | None
    extra: dict[str, Any] | None


@dataclass(slots=True)
class ParsedAnnotation:
    """An entry of ``annotations`` with its mask already as compressed RLE counts."""

    coco_id: int
    image_coco_id: int
    category_id: int
    rle_counts: str
    area: int
    bbox: tuple[float, ...]
    iscrowd: bool
    score: float | None
    extra: dict[str, Any] | None


@dataclass
class ParsedCoco:
    """A validated COCO file; ``kinds`` counts segmentations by encoding."""

    images: list[ParsedImage]
    categories: list[ParsedCategory]
    annotations: list[ParsedAnnotation]
    info: dict[str, Any] | None
    kinds: dict[str, int] = field(default_factory=dict)


def load_json(path: Path) -> Any:
    """Read a JSON file; any read or syntax error becomes a :class:`CocoFormatError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise CocoFormatError(
            f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise CocoFormatError(f"{path}: cannot read the file: {error}") from error


def parse_coco(data: Any, path: Path, *, keep_scores: bool) -> ParsedCoco:
    """Validate a loaded COCO instances document and convert its masks.

    Args:
        data: the parsed JSON.
        path: the file it came from (for messages).
        keep_scores: take each annotation's ``score`` into the score column (predictions);
            otherwise a ``score`` key is kept with the other extra keys.
    """
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: the top level must be a JSON object, not {_kind(data)}")
    images = _parse_images(_section(data, "images", path, required=True))
    categories = _parse_categories(_section(data, "categories", path, required=True))
    raw_annotations = _section(data, "annotations", path, required=False)
    parsed = ParsedCoco(images, categories, [], _info(data))
    parsed.annotations = _parse_annotations(raw_annotations, parsed, keep_scores)
    return parsed


def _section(data: dict, key: str, path: Path, *, required: bool) -> list:
    if key not in data:
        if required:
            raise CocoFormatError(f"{path}: missing the '{key}' list")
        return []
    if not isinstance(data[key], list):
        raise CocoFormatError(f"{path}: '{key}' must be a list, not {_kind(data[key])}")
    return data[key]


def _info(data: dict) -> dict[str, Any] | None:
    kept = {key: data[key] for key in ("info", "licenses") if key in data}
    return kept or None


def _kind(value: Any) -> str:
    return type(value).__name__


def _as_int(value: Any, what: str) -> int:
    """An integer id or size; integral floats (``3.0``) are accepted, bools are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CocoFormatError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise CocoFormatError(f"{what} must be an integer, got {value!r}")
        return int(value)
    return value


def _extra(raw: dict, standard: frozenset[str]) -> dict[str, Any] | None:
    extra = {key: value for key, value in raw.items() if key not in standard}
    return extra or None


def _parse_images(raw_images: list) -> list[ParsedImage]:
    images: list[ParsedImage] = []
    by_id: dict[int, int] = {}
    by_name: dict[str, int] = {}
    for index, raw in enumerate(raw_images):
        image = _parse_image(index, raw)
        if image.coco_id in by_id:
            raise CocoFormatError(
                f"{image.where}: duplicate image id {image.coco_id} "
                f"(also images[{by_id[image.coco_id]}])"
            )
        if image.file_name in by_name:
            raise CocoFormatError(
                f"{image.where}: duplicate file_name (also images[{by_name[image.file_name]}])"
            )
        by_id[image.coco_id] = by_name[image.file_name] = index
        images.append(image)
    return images


def _parse_image(index: int, raw: Any) -> ParsedImage:
    where = f"images[{index}]"
    if not isinstance(raw, dict):
        raise CocoFormatError(f"{where} must be an object, not {_kind(raw)}")
    for key in ("id", "file_name", "width", "height"):
        if key not in raw:
            raise CocoFormatError(f"{where}: missing '{key}'")
    file_name = raw["file_name"]
    if not isinstance(file_name, str) or not file_name:
        raise CocoFormatError(f"{where}: 'file_name' must be a non-empty string")
    where = f"{where} '{file_name}'"
    coco_id = _as_int(raw["id"], f"{where}: 'id'")
    width = _as_int(raw["width"], f"{where}: 'width'")
    height = _as_int(raw["height"], f"{where}: 'height'")
    if width <= 0 or height <= 0:
        raise CocoFormatError(f"{where}: size {width}x{height} is not positive")
    return ParsedImage(index, coco_id, file_name, width, height, _extra(raw, IMAGE_KEYS))


def _parse_categories(raw_categories: list) -> list[ParsedCategory]:
    categories: list[ParsedCategory] = []
    seen: dict[int, int] = {}
    for index, raw in enumerate(raw_categories):
        where = f"categories[{index}]"
        if not isinstance(raw, dict):
            raise CocoFormatError(f"{where} must be an object, not {_kind(raw)}")
        if "id" not in raw or "name" not in raw:
            raise CocoFormatError(f"{where}: needs 'id' and 'name'")
        coco_id = _as_int(raw["id"], f"{where}: 'id'")
        name, supercategory = raw["name"], raw.get("supercategory")
        if not isinstance(name, str) or not isinstance(supercategory, (str, type(None))):
            raise CocoFormatError(f"{where}: 'name' and 'supercategory' must be strings")
        if coco_id in seen:
            raise CocoFormatError(
                f"{where} '{name}': duplicate category id {coco_id} (also categories[{seen[coco_id]}])"
            )
        seen[coco_id] = index
        extra = _extra(raw, CATEGORY_KEYS)
        categories.append(ParsedCategory(index, coco_id, name, supercategory, extra))
    return categories


def _parse_annotations(
    raw_annotations: list, parsed: ParsedCoco, keep_scores: bool
) -> list[ParsedAnnotation]:
    images = {image.coco_id: image for image in parsed.images}
    category_ids = {category.coco_id for category in parsed.categories}
    standard = ANNOTATION_KEYS | {"score"} if keep_scores else ANNOTATION_KEYS
    seen: dict[int, int] = {}
    result = []
    for index, raw in enumerate(raw_annotations):
        if not isinstance(raw, dict):
            raise CocoFormatError(f"annotations[{index}] must be an object, not {_kind(raw)}")
        coco_id = _as_int(raw.get("id"), f"annotations[{index}]: 'id'")
        if coco_id in seen:
            raise CocoFormatError(
                f"annotations[{index}]: duplicate annotation id {coco_id} "
                f"(also annotations[{seen[coco_id]}])"
            )
        seen[coco_id] = index
        image = _annotation_image(raw, index, coco_id, images)
        where = f"annotation id {coco_id} in {image.where}"
        category_id = _as_int(raw.get("category_id"), f"{where}: 'category_id'")
        if category_id not in category_ids:
            raise CocoFormatError(f"{where}: category_id {category_id} is not in categories")
        iscrowd = raw.get("iscrowd", 0)
        if iscrowd not in (0, 1) or isinstance(iscrowd, float):
            raise CocoFormatError(f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")
        counts, kind = segmentation_counts(raw.get("segmentation"), image, where)
        parsed.kinds[kind] = parsed.kinds.get(kind, 0) + 1
        area, bbox = rle.area_and_bbox(counts, image.height, image.width)
        score = _score(raw, where) if keep_scores else None
        result.append(
            ParsedAnnotation(
                coco_id, image.coco_id, category_id, counts, area, bbox, bool(iscrowd), score,
                _extra(raw, standard),
            )
        )
    return result


def _annotation_image(
    raw: dict, index: int, coco_id: int, images: dict[int, ParsedImage]
) -> ParsedImage:
    image_id = _as_int(raw.get("image_id"), f"annotations[{index}] (id {coco_id}): 'image_id'")
    if image_id not in images:
        raise CocoFormatError(
            f"annotations[{index}] (id {coco_id}): image_id {image_id} is not in images"
        )
    return images[image_id]


def _score(raw: dict, where: str) -> float | None:
    score = raw.get("score")
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise CocoFormatError(f"{where}: 'score' must be a number, got {score!r}")
    return float(score)


def segmentation_counts(segmentation: Any, image: ParsedImage, where: str) -> tuple[str, str]:
    """Convert one COCO segmentation to compressed RLE counts at the image's size.

    Returns:
        ``(counts, kind)`` with kind ``"polygon"``, ``"rle"`` or ``"rle_uncompressed"``.
    """
    if isinstance(segmentation, list):
        return _polygon_counts(segmentation, image, where), "polygon"
    if isinstance(segmentation, dict):
        return _rle_counts(segmentation, image, where)
    raise CocoFormatError(
        f"{where}: 'segmentation' must be a list of polygons or an RLE object, "
        f"got {_kind(segmentation)}"
    )


def _polygon_counts(polygons: list, image: ParsedImage, where: str) -> str:
    if not polygons:
        raise CocoFormatError(f"{where}: 'segmentation' is an empty list of polygons")
    for part, polygon in enumerate(polygons):
        _check_polygon(polygon, part, image, where)
    return rle.polygons_to_counts(polygons, image.height, image.width)


def _check_polygon(polygon: Any, part: int, image: ParsedImage, where: str) -> None:
    if not isinstance(polygon, list):
        raise CocoFormatError(f"{where}: polygon {part} must be a list of numbers")
    if len(polygon) < 6 or len(polygon) % 2:
        raise CocoFormatError(
            f"{where}: polygon {part} has {len(polygon)} coordinates; it needs an even number, "
            f"at least 6 (3 points)"
        )
    try:
        coords = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as error:
        raise CocoFormatError(f"{where}: polygon {part} must be a list of numbers") from error
    inside = (
        (coords[:, 0] >= 0) & (coords[:, 0] <= image.width)
        & (coords[:, 1] >= 0) & (coords[:, 1] <= image.height)
    )
    if not inside.all():
        x, y = coords[int(np.argmin(inside))]
        raise CocoFormatError(
            f"{where}: polygon point ({float(x)}, {float(y)}) lies outside the "
            f"{image.width}x{image.height} image"
        )


def _rle_counts(segmentation: dict, image: ParsedImage, where: str) -> tuple[str, str]:
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if size != [image.height, image.width]:
        raise CocoFormatError(
            f"{where}: RLE size {size!r} does not match the {image.width}x{image.height} image "
            f"(expected [{image.height}, {image.width}], height first)"
        )
    if isinstance(counts, str):
        try:
            runs = rle.string_to_runs(counts)
        except ValueError as error:
            raise CocoFormatError(f"{where}: malformed compressed RLE counts: {error}") from error
        rle.check_runs(runs, image.height, image.width, where)
        return counts, "rle"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise CocoFormatError(f"{where}: uncompressed RLE counts must be integers")
        rle.check_runs(counts, image.height, image.width, where)
        return rle.uncompressed_to_counts(counts, image.height, image.width), "rle_uncompressed"
    raise CocoFormatError(f"{where}: RLE 'counts' must be a string or a list of integers")
