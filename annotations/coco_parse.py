"""The one COCO reader: every entry point (store import, studio upload, ``launch.py --coco``,
training data, evaluation, results import) reads COCO instances and results files through here.

Real files (CVAT, Label Studio and labelme exports, hand-edited JSON) carry small faults. The
reader repairs what can be repaired and refuses what cannot, item by item, so one bad annotation
never costs the rest of the file. Every repair and refusal becomes a :class:`Finding` that names
the item as the person knows it: the file name, the JSON position and the file's own id, e.g.
``annotations[3] (id 1) in shapes.json: category_id 9 is not in categories``.

Repaired (reported, then kept):
    - ids of any kind (image, category and annotation ids): integers in ``0..MAX_ID`` are kept, an
      integral float (``3.0``) or string (``"4"``) is read as its number (unless an integer id
      already is that number), every other id (other strings, booleans, negative ids, ids beyond
      ``MAX_ID``: the store keeps 32-bit ids, PostgreSQL's ``INTEGER``) is mapped to a fresh integer
      after the largest kept one, in file order; a missing, repeated or unusable (a list, NaN)
      annotation id gets a fresh one (the object is kept);
    - non-finite numbers (``NaN``, ``Infinity``, ``-Infinity``, which Python's ``json`` writes by
      default, and ``1e400``, which it reads as Infinity) in fields the reader does not know, nested
      anywhere (also ``info`` and ``licenses``): stored as ``null``, each named by its path;
    - ``file_name`` spellings of one file (``./a.png``, ``sub/../a.png``, ``sub\\a.png`` with
      Windows backslashes, ``sub//a.png``, an absolute path inside the image folder): written in
      one normal form (forward slashes, :func:`normal_file_name`, relative); entries naming one file under different ids are one image (the
      later ids are read as the first entry's), an entry repeated with its id is read once;
    - an image without ``width`` and ``height``: the file's size (when the files are checked);
    - a category ``name`` that is a number (``1``): its text; a ``supercategory`` that is not a
      string: its text when a finite number, else left out;
    - polygon rings with fewer than 3 points or an odd number of coordinates: dropped;
    - polygon points outside the image: the polygon is clipped to the image (pycocotools'
      rasteriser intersects it with the image; nothing outside ``0..W x 0..H`` is stored);
    - compressed RLE counts written as a Python bytes literal (``"b'PPY1...'"``, ``str()`` of
      pycocotools' bytes): the quotes removed;
    - ``iscrowd`` written ``"0"``/``"1"``, ``0.0``/``1.0`` or ``null`` (read as 0); a result's
      ``score`` written as a numeric string (``"0.87"``);
    - negative, non-numeric or non-finite ``bbox`` and ``area``: recomputed from the mask (they are always
      computed from the mask; a missing one is computed without a finding).
Refused (reported, then left out with what depends on them):
    - an image without a usable ``file_name``, size or id, an id that entries of different files
      claim (the picture its annotations lie on cannot be told: every entry of that id and its
      annotations), a file that is missing, unreadable, corrupt or truncated (with ``decode``
      every new file is decoded fully once), over the pixel limit (also the size the JSON says)
      or of another size than the JSON says (sizes are compared after EXIF orientation, see
      :mod:`fastinst.images`), a second entry of one file with another size;
    - a category id that entries of different names claim: every entry of that id and its
      annotations (which class such an annotation is cannot be told: never the first entry's
      class silently); an entry repeated with the same id and name is read once (repaired);
    - an annotation without a segmentation (a box alone is not an instance mask), of an unknown
      image or category, with non-finite or absurd coordinates or RLE runs (a point
      farther outside the image than 4x its larger side: refused before any rasterisation), an RLE
      of the wrong size or length, or a mask that is empty after the repairs (zero area).
Category ids in ``0..MAX_ID`` are kept as they are (0 included).

``strict=True`` refuses the whole file at the first finding instead (:class:`CocoFormatError`).
A file that is not a COCO object at all (bad JSON, no ``images`` or ``categories`` list) always
raises :class:`CocoFormatError`.

Conventions: masks are compressed COCO RLE strings (column-major, ``size = [height, width]``); the
rasteriser is pycocotools'; pixel (x, y) is ``mask[y, x]``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import posixpath
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple

import numpy as np

from annotations import rle
from annotations.errors import CocoFormatError

IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
CATEGORY_KEYS = frozenset({"id", "name", "supercategory"})
ANNOTATION_KEYS = frozenset(
    {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
)
ABSURD_FACTOR = 4
"""A polygon point farther outside the image than this many times its larger side is refused."""
MAX_ID = 2**31 - 1
"""The largest id the store keeps (PostgreSQL's ``INTEGER``); larger and negative ids are mapped."""


class _Refused(Exception):
    """An item cannot be repaired; the message says why (without the item's name)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One repair or refusal. ``where`` names the item (position, the file's own id, file name)."""

    where: str
    message: str
    action: str  # "repaired" or "refused"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class CocoReport:
    """Every finding of one read, in file order."""

    file_name: str
    findings: list[Finding] = field(default_factory=list)
    strict: bool = False

    def add(self, where: str, message: str, action: str) -> None:
        """Record a finding; in strict mode raise it instead."""
        finding = Finding(where, message, action)
        if self.strict:
            raise CocoFormatError(f"{finding} (strict mode: nothing was imported)")
        self.findings.append(finding)

    @property
    def repaired(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "repaired"]

    @property
    def refused(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "refused"]

    def lines(self) -> list[str]:
        """One line per finding, e.g. ``refused: annotations[3] (id 1) in a.json: ...``."""
        return [f"{f.action}: {f}" for f in self.findings]

    def summary(self) -> str:
        """``a.json: 2 repaired, 1 refused`` (or ``a.json: read without findings``)."""
        if not self.findings:
            return f"{self.file_name}: read without findings"
        return f"{self.file_name}: {len(self.repaired)} repaired, {len(self.refused)} refused"


@dataclass(slots=True)
class ParsedImage:
    """An accepted entry of ``images``; ``index`` is its JSON position, ``file_id`` the file's own
    id (any JSON value), ``coco_id`` the integer id used from here on."""

    index: int
    coco_id: int
    file_name: str
    width: int
    height: int
    extra: dict[str, Any] | None
    file_id: Any = None
    content_hash: str | None = None

    @property
    def where(self) -> str:
        return f"images[{self.index}] (id {_shown_id(self.file_id)}) '{self.file_name}'"


@dataclass(slots=True)
class ParsedCategory:
    """An accepted entry of ``categories`` (``coco_id`` is the file's id, kept as it is)."""

    index: int
    coco_id: int
    name: str
    supercategory: str | None
    extra: dict[str, Any] | None


@dataclass(slots=True)
class ParsedAnnotation:
    """An accepted entry of ``annotations`` with its mask as compressed RLE counts; ``area`` (pixels)
    and ``bbox`` (``[x, y, w, h]`` pixels) are computed from the mask by pycocotools."""

    coco_id: int
    image_coco_id: int
    category_id: int
    rle_counts: str
    area: int
    bbox: tuple[float, ...]
    iscrowd: bool
    score: float | None
    extra: dict[str, Any] | None
    index: int = -1
    file_id: Any = None
    kind: str = "polygon"   # how the file gave the mask: "polygon", "rle" or "rle_uncompressed"


@dataclass
class ParsedCoco:
    """A read COCO file: what was accepted, and the report of what was repaired or refused.

    ``image_ids`` maps each image's own id (as in the file, keyed by
    :func:`_id_key`) to its integer id, ``category_ids`` each category's; ``ambiguous_ids`` holds
    the image ids entries of different files claim (key -> why their annotations are refused).
    """

    images: list[ParsedImage]
    categories: list[ParsedCategory]
    annotations: list[ParsedAnnotation]
    info: dict[str, Any] | None
    report: CocoReport
    image_ids: dict[Any, int] = field(default_factory=dict)
    category_ids: dict[Any, int] = field(default_factory=dict)
    ambiguous_ids: dict[Any, str] = field(default_factory=dict)
    category_aliases: dict[int, int] = field(default_factory=dict)  # a repeated name's id -> the first's
    ambiguous_category_ids: dict[Any, str] = field(default_factory=dict)   # like ambiguous_ids, of categories
    # integer ids of accepted images one of whose annotations was refused (they are not complete)
    incomplete_images: set[int] = field(default_factory=set)

    def to_coco_dict(self) -> dict[str, Any]:
        """A clean COCO instances document of what was accepted: integer ids, RLE segmentations,
        ``area``/``bbox``/``iscrowd`` from the masks. Suitable for pycocotools ``COCO``/``COCOeval``."""
        sizes = self._sizes()
        return {
            "images": [{"id": i.coco_id, "file_name": i.file_name, "width": i.width, "height": i.height}
                       for i in self.images],
            "categories": [{"id": c.coco_id, "name": c.name, "supercategory": c.supercategory or ""}
                           for c in self.categories],
            "annotations": [_clean_annotation(a, sizes) for a in self.annotations],
        }

    def _sizes(self) -> dict[int, tuple[int, int]]:
        return {i.coco_id: (i.height, i.width) for i in self.images}


def _clean_annotation(ann: ParsedAnnotation, sizes: dict[int, tuple[int, int]]) -> dict[str, Any]:
    height, width = sizes[ann.image_coco_id]
    entry = {"id": ann.coco_id, "image_id": ann.image_coco_id, "category_id": ann.category_id,
             "segmentation": {"size": [height, width], "counts": ann.rle_counts},
             "area": ann.area, "bbox": list(ann.bbox), "iscrowd": int(ann.iscrowd)}
    if ann.score is not None:
        entry["score"] = ann.score
    return entry


ImageSizer = Callable[[Path], tuple[int, int]]
# ``file_name`` in the JSON -> (the name of the file on disk that is this image, why it differs or "")
ImageLocator = Callable[[str], tuple[str, str]]

UPLOAD_FOLDER = "uploads"   # where the studio stores images added through the browser


def load_json(path: Path, display_name: str | None = None) -> Any:
    """Read a JSON file; any read or syntax error becomes a :class:`CocoFormatError` naming it."""
    name = display_name or Path(path).name
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise CocoFormatError(
            f"{name}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}{_json_hint(error)}"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise CocoFormatError(f"{name}: cannot read the file: {error}") from error


def _json_hint(error: json.JSONDecodeError) -> str:
    """What JSON5-style text (hand-edited files, some tools' config-like exports) a syntax error
    stopped at: a comment or a comma after the last item, which JSON (RFC 8259) does not allow."""
    text, at = error.doc, error.pos
    if text[at:at + 2] in ("//", "/*"):
        return " (a comment: JSON has no comments; remove it)"
    before = text[:at].rstrip()
    if before.endswith(",") and text[at:at + 1] in ("]", "}"):
        return " (a comma after the last item: JSON allows none; remove it)"
    return ""


def read_coco(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    strict: bool = False,
    keep_scores: bool = False,
    hash_files: bool = False,
    display_name: str | None = None,
    max_pixels: int | None = None,
    decode: bool = False,
    decoded: frozenset[str] = frozenset(),
) -> ParsedCoco:
    """Read and repair a COCO instances file (see the module docstring for the rules).

    Args:
        path: the JSON file.
        image_root: folder the ``file_name`` entries are relative to; when given, every image file
            must exist, open, fit the pixel limit and have the size the JSON says (after EXIF
            orientation). ``None`` checks nothing on disk.
        strict: refuse the whole file at the first repair or refusal.
        keep_scores: read each annotation's ``score`` (predictions).
        hash_files: record each image file's SHA-256 (the store keeps it).
        display_name: the name findings use for the file (e.g. the uploaded file's own name
            rather than a temporary path); default the path's name.
        max_pixels: pixel limit for image files (default :func:`fastinst.images.max_pixels`).
        decode: decode every image file fully (a truncated or corrupt file is refused by name)
            instead of reading its header only; the store's import does, once per new image.
        decoded: file names (as the JSON gives them, normalised) already decoded before (images a
            dataset holds): their header is read only.

    Raises:
        CocoFormatError: not a COCO file at all, every image refused (the message says why), or
            any finding in strict mode.
    """
    name = display_name or Path(path).name
    data = load_json(Path(path), name)
    sizer = locator = None
    if image_root is not None:
        sizer = _file_sizer(Path(image_root), max_pixels, decode, decoded)
        locator = file_locator(Path(image_root))
    parsed = parse_coco(data, name, strict=strict, keep_scores=keep_scores, image_sizer=sizer,
                        image_locator=locator, max_pixels=max_pixels)
    if image_root is not None and hash_files:
        for image in parsed.images:
            image.content_hash = file_sha256(Path(image_root) / image.file_name)
    return parsed


def _file_sizer(root: Path, limit: int | None, decode: bool, decoded: frozenset[str]) -> ImageSizer:
    from fastinst.images import decoded_size, image_size  # the one image loader (EXIF-aware)

    def size(relative: Path) -> tuple[int, int]:
        if decode and relative.as_posix() not in decoded:
            return decoded_size(root / relative, limit=limit)
        return image_size(root / relative, limit=limit)
    return size


def normal_file_name(name: str) -> str:
    """One spelling per file: Windows backslashes as ``/``, ``.`` parts, ``x/..`` pairs and repeated
    slashes removed (``./a.png``, ``sub/../a.png``, ``sub\\..\\a.png`` and ``sub//../a.png`` are all
    ``a.png``); a ``file://`` URI is its path, percent-decoded (``file:///C:/my%20data/a.png`` is
    ``C:/my data/a.png``). Purely textual (:func:`posixpath.normpath`); a leading ``..`` stays."""
    if name[:5].lower() == "file:":
        name = urllib.parse.unquote(urllib.parse.urlsplit(name).path)
        name = name[1:] if _DRIVE.match(name[1:]) else name    # /C:/data/a.png -> C:/data/a.png
    normal = posixpath.normpath(name.replace("\\", "/"))
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


_DRIVE = re.compile(r"[A-Za-z]:/")
"""A Windows drive letter at the start of a name written with forward slashes (``C:/data/a.png``)."""
OUTSIDE_FOLDER = "an absolute path outside the image folder"
"""How :func:`file_locator` says it found a file by the end of such a path (see :func:`_parse_images`)."""


def file_locator(root: Path) -> ImageLocator:
    """Find the file a JSON ``file_name`` means under ``root``: the name itself; else the same name
    in the other Unicode normal form (macOS and zips made there store names decomposed, NFD, while
    most tools write JSON composed, NFC: the two print the same); else the same name in the
    studio's ``uploads/`` folder (images added through the browser), unless uploads of that name
    were stored more than once (``name-2`` ...: which one is meant cannot be told). An absolute
    path inside ``root`` is that file's relative name (one file, one image). Then, each said in the
    returned reason: the name percent-decoded (``my%20photo.jpg``, as web tools write names); the
    longest end of an absolute path from another machine (``C:/data/img/sub/a.png``,
    ``/home/x/sub/a.png``) that names a file under ``root``; the one file whose name differs only
    in letter case (``IMG_01.JPG`` for ``img_01.jpg``: datasets made on Windows or macOS, whose
    disks ignore case; none when several files differ so, and the reason says which). Returns the
    name unchanged when none fits (the size check then says "image not found"), with a reason
    when several files could be meant."""
    listings: dict[Path, dict[str, list[str]]] = {}
    several: dict[str, list[str]] = {}   # a name -> the files that differ from it only in letter case

    def variants(name: str) -> list[str]:
        return list(dict.fromkeys([name, unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)]))

    def exact(name: str) -> tuple[str, str] | None:
        for candidate in variants(name):
            if (root / candidate).is_file():
                return candidate, "" if candidate == name else "the same name in another Unicode normal form"
        return None

    def any_case(name: str) -> str | None:
        """The one file under ``root`` whose path is ``name`` but for letter case, else ``None``."""
        folder, found = root, []
        for part in name.split("/"):
            if folder not in listings:
                try:
                    entries = [entry.name for entry in folder.iterdir()] if folder.is_dir() else []
                except OSError:
                    entries = []
                listings[folder] = {}
                for entry in entries:
                    listings[folder].setdefault(unicodedata.normalize("NFC", entry).casefold(), []).append(entry)
            matches = listings[folder].get(unicodedata.normalize("NFC", part).casefold(), [])
            if len(matches) > 1:
                several.setdefault(name, sorted("/".join(found + [match]) for match in matches))
            if len(matches) != 1:
                return None
            found.append(matches[0])
            folder = folder / matches[0]
        return "/".join(found) if folder.is_file() else None

    def elsewhere(name: str) -> tuple[str, str] | None:
        """The file a percent-encoded name, another machine's absolute path or another case means."""
        decoded = urllib.parse.unquote(name)
        for spelled, why in dict.fromkeys([(name, ""), (decoded, "the name percent-decoded (%20 is a space)")]):
            parts = [part for part in spelled.split("/") if part]
            foreign = spelled.startswith("/") or bool(_DRIVE.match(spelled))
            for start in range(1 if foreign else 0, len(parts) if foreign else 1):
                tail = "/".join(parts[start:])
                reasons = [why] + ([f"{OUTSIDE_FOLDER}: its end {tail!r} is under the folder"] if foreign else [])
                found = exact(tail)
                if found is not None and (found[0] != name):
                    return found[0], "; ".join(r for r in reasons + [found[1]] if r)
                cased = any_case(tail)
                if cased is not None:
                    return cased, "; ".join(r for r in reasons + ["the same name but for letter case"] if r)
        return None

    located: dict[str, tuple[str, str]] = {}

    def locate(name: str) -> tuple[str, str]:
        if name not in located:   # the reader asks once per entry and again for the checks of ids
            located[name] = find(name)
        return located[name]

    def find(name: str) -> tuple[str, str]:
        inside = _under(name, root)
        if inside is not None:
            return inside, "an absolute path inside the image folder"
        found = exact(name)
        if found is not None:
            return found
        for candidate in variants(name):
            found = root / UPLOAD_FOLDER / candidate
            # uploads of the same name were stored as name-2, name-3 ...: which one the file means
            # cannot be told, so none is taken (the image is then "not found", not a wrong picture)
            if found.is_file() and not any(found.parent.glob(f"{glob.escape(found.stem)}-[0-9]*{glob.escape(found.suffix)}")):
                return f"{UPLOAD_FOLDER}/{candidate}", "added through the studio's upload"
        found = elsewhere(name)
        if found is not None:
            return found
        if name in several:
            return name, (f"not found; {len(several[name])} files differ from it only in letter case "
                          f"({', '.join(repr(n) for n in several[name])}): which one is meant cannot be told")
        return name, ""
    return locate


def _under(name: str, root: Path) -> str | None:
    """``name`` relative to ``root`` when it is an absolute path inside it (``/data/img/a.png`` under
    ``/data/img``: the same file as ``a.png``), else ``None``."""
    if not name.startswith("/"):
        return None
    for base in dict.fromkeys([root.absolute().as_posix(), root.resolve().as_posix()]):
        if name.startswith(base.rstrip("/") + "/"):
            return name[len(base.rstrip("/")) + 1:]
    return None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_coco(
    data: Any,
    name: str,
    *,
    strict: bool = False,
    keep_scores: bool = False,
    image_sizer: ImageSizer | None = None,
    image_locator: ImageLocator | None = None,
    max_pixels: int | None = None,
) -> ParsedCoco:
    """Validate and repair a loaded COCO instances document (see :func:`read_coco`).

    Args:
        data: the parsed JSON.
        name: the file's name, for findings.
        image_sizer: ``file_name -> (width, height)`` of the file on disk, or ``None`` to skip the
            file checks; it raises ``fastinst.ImageError`` for an unreadable file.
        image_locator: finds the file a ``file_name`` means (:func:`file_locator`); an image whose
            file is found under another name takes that name (a repair in the report).
        max_pixels: pixel limit for the size the JSON gives an image (default
            :func:`fastinst.images.max_pixels`).
    """
    name = Path(str(name)).name
    if not isinstance(data, dict):
        hint = " (a results list? a dataset file is an object with 'images')" if isinstance(data, list) else ""
        raise CocoFormatError(f"{name}: the top level must be a JSON object, not {_kind(data)}{hint}")
    report = CocoReport(name, strict=strict)
    raw_images = _section(data, "images", name, required=True)
    raw_categories = _section(data, "categories", name, required=True)
    raw_annotations = _section(data, "annotations", name, required=False)
    parsed = ParsedCoco([], [], [], _info(data, name, report), report)
    _parse_categories(raw_categories, name, parsed)
    _parse_images(raw_images, name, parsed, _ImageFiles(image_sizer, image_locator, max_pixels))
    if raw_images and not parsed.images and image_sizer is not None:
        first = report.refused[0] if report.refused else "see the report"
        hint = " Is the image folder right?" if "image not found" in str(first) else ""
        raise CocoFormatError(f"{name}: none of its {len(raw_images)} images could be used; the first: {first}.{hint}")
    parsed.annotations = _parse_annotations(raw_annotations, name, parsed, keep_scores)
    return parsed


def read_results(path: str | Path, ground_truth: ParsedCoco, *, strict: bool = False,
                 display_name: str | None = None,
                 image_names: dict[Any, str] | None = None) -> tuple[list[dict[str, Any]], CocoReport]:
    """Read a COCO results file (a JSON list of ``{image_id, category_id, segmentation, score}``)
    against the ground truth it was made for, with the same repairs and refusals.

    Image ids are mapped with the ground truth's own mapping (so string ids match). With
    ``image_names`` (the results file's image id -> file name, e.g. ``images.json`` of
    ``python -m fastinst predict``, whose ids are its own) results are matched to the ground truth
    by file name instead. Returns the accepted results as clean dicts (integer ids, compressed RLE,
    ``score``) and the report. An empty list, or an object whose only list is ``annotations`` of
    scored results, is read with a finding that says so; a result without a ``score`` is refused
    by name.

    Raises:
        CocoFormatError: not a JSON list (a dataset file, with ``images`` or unscored
            ``annotations``, is named as one), every result refused, or any finding in strict mode.
    """
    name = display_name or Path(path).name
    data = load_json(Path(path), name)
    report = CocoReport(name, strict=strict)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        if "images" in data or not all(isinstance(a, dict) and "score" in a for a in data["annotations"]):
            raise CocoFormatError(f"{name} is a COCO dataset file (its annotations are not scored results), not a "
                                  f"results file (a JSON list of results, each with a 'score'): give it as the "
                                  f"ground truth, and the model's results as the results")
        report.add(name, "a COCO document, not a results list: its 'annotations' are read as the results",
                   "repaired")
        data = data["annotations"]
    if not isinstance(data, list):
        raise CocoFormatError(f"{name}: a results file must be a JSON list, not {_kind(data)}")
    if not data:
        report.add(name, "holds no results: every AP of it is 0", "refused")
    if image_names is not None:
        by_name = {image.file_name: image.file_id for image in ground_truth.images}
        names = {_id_key(key): value for key, value in image_names.items()}
        data = [_by_file_name(result, names, by_name) for result in data]
    parsed = ParsedCoco(ground_truth.images, ground_truth.categories, [], None, report,
                        image_ids=ground_truth.image_ids, category_ids=ground_truth.category_ids,
                        ambiguous_ids=ground_truth.ambiguous_ids, category_aliases=ground_truth.category_aliases,
                        ambiguous_category_ids=ground_truth.ambiguous_category_ids)
    parsed.annotations = _parse_annotations(data, name, parsed, keep_scores=True, results=True)
    if data and not parsed.annotations:
        raise CocoFormatError(f"{name}: none of its {len(data)} results could be used; the first: "
                              f"{parsed.report.refused[0]}")
    sizes = parsed._sizes()
    return [_clean_annotation(a, sizes) for a in parsed.annotations], parsed.report


def _by_file_name(result: Any, image_names: dict[Any, str], by_name: dict[str, Any]) -> Any:
    """A result with its image id replaced by the ground truth's id of the same file name."""
    if not isinstance(result, dict):
        return result
    name = image_names.get(_id_key(result.get("image_id")))
    if name is None:
        return result
    return {**result, "image_id": by_name.get(normal_file_name(name), f"{name} (no image of that file name)")}


def _section(data: dict, key: str, name: str, *, required: bool) -> list:
    if key not in data:
        if required:
            raise CocoFormatError(f"{name}: missing the '{key}' list")
        return []
    if not isinstance(data[key], list):
        raise CocoFormatError(f"{name}: '{key}' must be a list, not {_kind(data[key])}")
    return data[key]


def _info(data: dict, name: str, report: CocoReport) -> dict[str, Any] | None:
    kept = {key: data[key] for key in ("info", "licenses") if key in data}
    return _finite_extra(kept, f"{name} (its info and licenses)", report) or None


def _kind(value: Any) -> str:
    return type(value).__name__


def _int(value: Any, what: str) -> int:
    """An integer: ints, integral floats (``3.0``) and integral strings (``"3"``); not bools."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(f"{what} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise _Refused(f"{what} must be an integer, got {value!r}")
        return int(value)
    return value


def is_finite_number(value: Any) -> bool:
    """A JSON number a double holds: an int or float, not a bool, not NaN/Infinity, not an int
    beyond a double's range (``10**400``: Python's ``json`` reads it, ``float()`` cannot)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def finite_json(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every non-finite float (NaN, Infinity, -Infinity) nested in dicts and lists
    replaced by ``None``, and the path of each, e.g. ``attributes.score (nan)``. ``value`` itself is
    not modified; it is returned unchanged (same object) when nothing is replaced (checked first
    by the C encoder, so a clean value costs one ``json.dumps``). Used at import
    (:func:`parse_coco`) and export (:mod:`annotations.coco_export`)."""
    try:
        json.dumps(value, allow_nan=False)
        return value, []
    except ValueError:
        pass
    except TypeError:   # not JSON at all (a caller's object): walked below, kept as it is
        pass
    return _replace_non_finite(value, path)


def _replace_non_finite(value: Any, path: str) -> tuple[Any, list[str]]:
    if isinstance(value, dict):
        found: list[str] = []
        items = {}
        for key, item in value.items():
            items[key], inner = _replace_non_finite(item, f"{path}.{key}" if path else str(key))
            found += inner
        return (items if found else value), found
    if isinstance(value, list):
        found = []
        items = []
        for index, item in enumerate(value):
            cleaned, inner = _replace_non_finite(item, f"{path}[{index}]")
            items.append(cleaned)
            found += inner
        return (items if found else value), found
    if isinstance(value, float) and not math.isfinite(value):
        return None, [f"{path or 'the value'} ({value})"]
    return value, []


def _finite_extra(extra: dict[str, Any], where: str, report: CocoReport) -> dict[str, Any]:
    cleaned, found = finite_json(extra)
    for path in found:
        report.add(where, f"{path} is not a finite number (JSON has no NaN or Infinity): stored as null",
                   "repaired")
    return cleaned


def _extra(raw: dict, standard: frozenset[str], where: str, report: CocoReport) -> dict[str, Any] | None:
    extra = {key: value for key, value in raw.items() if key not in standard}
    return _finite_extra(extra, where, report) or None


def _id_key(value: Any) -> Any:
    """A hashable key for a file's id: its type kept (``True`` is not ``1``, ``"7"`` is not ``7``)
    except that an integral float is its integer (``7.0`` is ``7``); ``None`` for what is no id
    (lists, objects, NaN)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return ("num", int(value) if value.is_integer() else value)
    if isinstance(value, int):
        return ("num", value)
    return ("str", value) if isinstance(value, str) else None


def _shown_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > 24:
        return f"{str(value)[:12]}...({len(str(abs(value)))} digits)"
    return repr(value)


class _IdMapper:
    """The file's own ids -> the store's integers (``0..MAX_ID``): such integers are kept (an
    integral float, ``3.0``, is its integer); an integral string (``"4"``) is read as its number
    when no integer id of the file is that number (so the id the person wrote survives an export);
    every other id (strings, booleans, negative, beyond ``MAX_ID``, fractional) gets a fresh number
    after the largest kept one, the same id always the same number."""

    def __init__(self, values: Iterable[Any]) -> None:
        values = list(values)
        kept = {int(v) for v in values if _kept_int(v)}
        self.mapped: dict[Any, int] = {}
        self.used = set(kept)
        for value in values:   # "4" and " 4": the first is read as 4 (when no id is the integer 4)
            number = _string_number(value)
            if number is not None and number not in self.used:
                self.mapped[_id_key(value)] = number
                self.used.add(number)
        self.next_id = max(self.used, default=0) + 1

    def __call__(self, value: Any) -> tuple[int, str]:
        """``(integer id, the finding when it is not the file's own integer, else "")``.

        Raises:
            _Refused: not an id at all (a list, an object, ``null``, NaN or Infinity).
        """
        key = _id_key(value)
        if key is None or value == "":
            raise _Refused(f"id must be an integer or a string, got {_shown_id(value)}")
        if _kept_int(value):
            return int(value), ("" if isinstance(value, int) else f"id {value!r} read as the integer {int(value)}")
        if key not in self.mapped:
            self.mapped[key] = self.fresh()
        number = self.mapped[key]
        return number, _id_finding(value, number)

    def fresh(self) -> int:
        """An integer no id of the file uses (after the largest; from 0 up when that is ``MAX_ID``)."""
        if self.next_id > MAX_ID:
            self.next_id = 0
        while self.next_id in self.used:
            self.next_id += 1
        self.used.add(self.next_id)
        self.next_id += 1
        return self.next_id - 1


def _kept_int(value: Any) -> bool:
    """An integer (or integral float) id the store keeps as it is: ``0 <= id <= MAX_ID``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return 0 <= value <= MAX_ID


def _string_number(value: Any) -> int | None:
    """The number an integral string id stands for, if the store keeps it as it is."""
    if isinstance(value, str) and value.strip().isdigit() and int(value) <= MAX_ID:
        return int(value)
    return None


def _id_finding(value: Any, number: int) -> str:
    if isinstance(value, str):
        if _string_number(value) == number:
            return f"string id {value!r} read as the integer {number}"
        return f"string id {value!r} mapped to integer id {number}"
    why = ("a boolean" if isinstance(value, bool) else "not an integer" if isinstance(value, float) and not
           value.is_integer() else "negative" if value < 0 else f"beyond the largest id kept ({MAX_ID})")
    return f"id {_shown_id(value)} is {why}: mapped to integer id {number}"


def _reference(value: Any, ids: dict[Any, int], what: str) -> tuple[int | None, str]:
    """The integer id an annotation's ``image_id``/``category_id`` means, and a finding when it was
    written as another type than the id it names (``"2"`` or ``2.0`` for ``2``)."""
    key = _id_key(value)
    if key in ids:
        found = ids[key]
        converted = isinstance(value, float)
    else:
        try:
            found = ids.get(("num", _int(value, what))) if isinstance(value, (str, float)) else None
        except _Refused:
            found = None
        converted = found is not None
    return found, (f"{what} {value!r} read as the integer {found}" if converted else "")


# ------------------------------------------------------------------------------------ categories


def _parse_categories(raw_categories: list, name: str, parsed: ParsedCoco) -> None:
    """The accepted categories into ``parsed``, with ``category_aliases``: ``{id: id of the first
    category of the same name}`` for a name given twice (its annotations are read as that first
    category: a class is its name). A category id that entries of different names claim is
    refused with every entry and annotation of it (``ambiguous_category_ids``): which class such an
    annotation is cannot be told (the rule of image ids); an entry repeated with its id and name is
    read once."""
    report = parsed.report
    mapper = _IdMapper(raw.get("id") for raw in raw_categories if isinstance(raw, dict))
    parsed.ambiguous_category_ids = _ambiguous_category_ids(raw_categories)
    categories_by_index: dict[int, ParsedCategory] = {}
    by_name: dict[str, ParsedCategory] = {}
    for index, raw in enumerate(raw_categories):
        where = f"categories[{index}] in {name}"
        key = _id_key(raw.get("id")) if isinstance(raw, dict) else None
        try:
            if key in parsed.ambiguous_category_ids:
                raise _Refused(parsed.ambiguous_category_ids[key])
            category, findings = _parse_category(index, raw, mapper)
        except _Refused as refusal:
            report.add(where, f"{refusal}; the category and its annotations are left out", "refused")
            continue
        if key in parsed.category_ids:
            first = next(c for c in categories_by_index.values() if c.coco_id == parsed.category_ids[key])
            report.add(where, f"an earlier entry has this id and name (categories[{first.index}] {first.name!r}): "
                              f"read as one class", "repaired")
            continue
        for finding in findings:
            report.add(where, finding, "repaired")
        category.extra = _extra(raw, CATEGORY_KEYS, where, report)
        categories_by_index[index] = category
        parsed.category_ids[key] = category.coco_id
        first = by_name.get(category.name)
        if first is not None:
            report.add(f"categories[{index}] (id {category.coco_id}) in {name}", f"the name {category.name!r} is also categories["
                       f"{first.index}] (id {first.coco_id}): its annotations are read as category "
                       f"{first.coco_id}", "repaired")
            parsed.category_aliases[category.coco_id] = first.coco_id
            continue
        by_name[category.name] = category
        parsed.categories.append(category)


def _ambiguous_category_ids(raw_categories: list) -> dict[Any, str]:
    """Category ids that entries of different names claim -> the refusal that names the entries."""
    claims: dict[Any, list[tuple[int, Any]]] = {}
    for index, raw in enumerate(raw_categories):
        if isinstance(raw, dict) and _id_key(raw.get("id")) is not None:
            claims.setdefault(_id_key(raw["id"]), []).append((index, _name_key(raw.get("name"))))
    return _claimed_by_several(claims, lambda index, label: f"categories[{index}] {label!r}",
                               "category", "names", "which class an annotation of it is cannot be told")


def _name_key(value: Any) -> Any:
    """A category name as :func:`_category_name` reads it (for telling entries apart), else the value's text."""
    try:
        return _category_name(value, [])
    except _Refused:
        return repr(value)


def _category_name(value: Any, findings: list[str]) -> str:
    """A category's name: a non-empty string; a finite number (``1``, as YOLO-converted files write
    class names) is its text, appended to ``findings``."""
    if isinstance(value, str) and value:
        return value
    if is_finite_number(value):
        findings.append(f"name {value!r} is a number: read as the name {str(value)!r}")
        return str(value)
    raise _Refused("'name' must be a non-empty string")


def _parse_category(index: int, raw: Any, mapper: _IdMapper) -> tuple[ParsedCategory, list[str]]:
    if not isinstance(raw, dict):
        raise _Refused(f"must be an object, not {_kind(raw)}")
    if "id" not in raw or "name" not in raw:
        raise _Refused("needs 'id' and 'name'")
    findings: list[str] = []
    name = _category_name(raw["name"], findings)
    coco_id, finding = mapper(raw["id"])
    if finding:
        findings.insert(0, finding)
    supercategory = raw.get("supercategory")
    if not isinstance(supercategory, (str, type(None))):
        kept = str(supercategory) if is_finite_number(supercategory) else None
        findings.append(f"supercategory {_shown_id(supercategory)} is not a string: "
                        + (f"read as {kept!r}" if kept is not None else "left out"))
        supercategory = kept
    return ParsedCategory(index, coco_id, name, supercategory, None), findings


# ---------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class _ImageFiles:
    """How image entries meet the files: their size on disk, the file a name means, the pixel limit."""

    sizer: ImageSizer | None
    locator: ImageLocator | None
    max_pixels: int | None


def _parse_images(raw_images: list, name: str, parsed: ParsedCoco, files: _ImageFiles) -> None:
    """The accepted images into ``parsed`` (``images``, ``image_ids``, ``ambiguous_ids``).

    An image is its file: entries naming one file (after :func:`normal_file_name` and the
    locator) are one image, the later entries' ids read as the first's; an id that entries of
    different files claim is refused with every entry and annotation of it."""
    report = parsed.report
    mapper = _IdMapper(raw.get("id") for raw in raw_images if isinstance(raw, dict))
    parsed.ambiguous_ids = _ambiguous_ids(raw_images, files.locator)
    ambiguous_files = _ambiguous_files(raw_images, files.locator)
    by_name: dict[str, ParsedImage] = {}
    for index, raw in enumerate(raw_images):
        file_id = raw.get("id") if isinstance(raw, dict) else None
        where = _image_where(index, raw, name)
        key = _id_key(file_id)
        try:
            if key in parsed.ambiguous_ids:
                raise _Refused(parsed.ambiguous_ids[key])
            repairs: list[str] = []
            file_name = _image_file_name(raw, files.locator, repairs)
            if file_name in ambiguous_files:
                raise _Refused(ambiguous_files[file_name])
            first = by_name.get(file_name)
            if first is not None:
                _same_file(raw, first, key, parsed, where, repairs)
                continue
            image = _parse_image(index, raw, file_name, mapper, files, repairs)
        except _Refused as refusal:
            report.add(where, f"{refusal}; the image and its annotations are left out", "refused")
            continue
        for repair in repairs:
            report.add(where, repair, "repaired")
        image.extra = _extra(raw, IMAGE_KEYS, where, report)
        parsed.image_ids[key] = image.coco_id
        by_name[image.file_name] = image
        parsed.images.append(image)


def _ambiguous_ids(raw_images: list, locator: ImageLocator | None) -> dict[Any, str]:
    """Image ids that entries of different files claim -> the refusal that names the entries."""
    claims: dict[Any, list[tuple[int, str]]] = {}
    for index, raw in enumerate(raw_images):
        if isinstance(raw, dict) and isinstance(raw.get("file_name"), str) and _id_key(raw.get("id")) is not None:
            file_name = normal_file_name(raw["file_name"])
            file_name = locator(file_name)[0] if locator is not None else file_name
            claims.setdefault(_id_key(raw["id"]), []).append((index, file_name))
    return _claimed_by_several(claims, lambda index, file_name: f"images[{index}] '{file_name}'",
                               "image", "files", "which picture an annotation of it lies on cannot be told")


def _ambiguous_files(raw_images: list, locator: ImageLocator | None) -> dict[str, str]:
    """Files under the image folder that different absolute paths of another machine all end in
    (``C:/a/x.png`` and ``C:/b/x.png`` found as ``x.png``) -> the refusal that names the entries:
    they were two pictures there, and which one the file here is cannot be told."""
    if locator is None:
        return {}
    claims: dict[str, list[tuple[int, str, bool]]] = {}
    for index, raw in enumerate(raw_images):
        if isinstance(raw, dict) and isinstance(raw.get("file_name"), str) and raw["file_name"]:
            spelled = normal_file_name(raw["file_name"])
            found, why = locator(spelled)
            claims.setdefault(found, []).append((index, spelled, OUTSIDE_FOLDER in why))
    ambiguous = {}
    for found, entries in claims.items():
        if any(by_end for *_, by_end in entries) and len({spelled for _, spelled, _ in entries}) > 1:
            named = ", ".join(f"images[{index}] {spelled!r}" for index, spelled, _ in entries)
            ambiguous[found] = (f"{named} are different paths that all end in the folder's {found!r}: which of "
                                f"them this file is cannot be told")
    return ambiguous


def _same_file(raw: dict, first: ParsedImage, key: Any, parsed: ParsedCoco, where: str,
               repairs: list[str]) -> None:
    """A later entry naming ``first``'s file: its id is read as ``first``'s (reported)."""
    if key is None:
        raise _Refused(f"id must be an integer or a string, got {_shown_id(raw['id'])}")
    width, height = raw.get("width"), raw.get("height")
    if (width, height) != (None, None) and (width, height) != (first.width, first.height):
        raise _Refused(f"the same file as {first.where} but {width}x{height} (width x height), not "
                       f"{first.width}x{first.height}")
    for repair in repairs:
        parsed.report.add(where, repair, "repaired")
    if key in parsed.image_ids:
        parsed.report.add(where, f"an earlier entry has this id and file ({first.where} is that file): read as "
                                 f"one image", "repaired")
        return
    parsed.image_ids[key] = first.coco_id
    parsed.report.add(where, f"the same file as {first.where}: one image; annotations with image_id "
                             f"{_shown_id(raw['id'])} are read as on it (image {first.coco_id})", "repaired")


def _image_where(index: int, raw: Any, name: str) -> str:
    if not isinstance(raw, dict):
        return f"images[{index}] in {name}"
    label = f" '{raw['file_name']}'" if isinstance(raw.get("file_name"), str) else ""
    return f"images[{index}] (id {_shown_id(raw.get('id'))}){label} in {name}"


def _image_file_name(raw: Any, locator: ImageLocator | None, repairs: list[str]) -> str:
    """The entry's file name in its normal form, as found on disk by ``locator``."""
    if not isinstance(raw, dict):
        raise _Refused(f"must be an object, not {_kind(raw)}")
    if "id" not in raw:
        raise _Refused("missing 'id'")
    file_name = raw.get("file_name")
    if not isinstance(file_name, str) or not file_name or normal_file_name(file_name) == ".":
        raise _Refused("'file_name' must be a non-empty string naming a file")
    normal = normal_file_name(file_name)
    if normal != file_name:
        repairs.append(f"file_name {file_name!r} is written {normal!r} (one spelling per file)")
    if locator is not None:
        found, why = locator(normal)
        if found == normal and why:    # not found, and the locator says why (several files fit)
            raise _Refused(f"image {why}")
        if found != normal:
            repairs.append(f"no file called {normal!r}; the file {found!r} is this image ({why})")
            return found
    return normal


def _parse_image(index: int, raw: dict, file_name: str, mapper: _IdMapper, files: _ImageFiles,
                 repairs: list[str]) -> ParsedImage:
    """One ``images`` entry; what was repaired in it is appended to ``repairs``."""
    coco_id, finding = mapper(raw["id"])
    if finding:
        repairs.append(finding)
    width, height = raw.get("width"), raw.get("height")
    if width is not None or height is not None:   # refused before the file is read
        width, height = _int(width, "'width'"), _int(height, "'height'")
        _check_json_size(width, height, files.max_pixels)
    on_disk = _size_on_disk(file_name, files.sizer)
    if width is None and height is None and on_disk is not None:
        width, height = on_disk
        repairs.append(f"no width/height: the file's size {width}x{height} (width x height) is used")
    width, height = _int(width, "'width'"), _int(height, "'height'")
    if on_disk is not None and on_disk != (width, height):
        swapped = (" (the two sides swapped: a tool that ignores the photo's EXIF rotation writes the size of "
                   "the unrotated pixels, and which way its masks lie cannot be told)" if on_disk == (height, width)
                   else "")
        raise _Refused(
            f"the JSON says {width}x{height} (width x height) but the file is {on_disk[0]}x{on_disk[1]} "
            f"(after EXIF orientation){swapped}; no mask is read at the wrong size")
    return ParsedImage(index, coco_id, file_name, width, height, None, raw["id"])


def _check_json_size(width: int, height: int, limit: int | None) -> None:
    from fastinst.images import max_pixels

    if width <= 0 or height <= 0:
        raise _Refused(f"size {width}x{height} is not positive")
    allowed = max_pixels(limit)
    if width * height > allowed:
        raise _Refused(f"the JSON says {_shown_id(width)}x{_shown_id(height)} (width x height), over the "
                       f"pixel limit of {allowed:,}; raise it with --max-pixels or FASTINST_MAX_PIXELS")


def _size_on_disk(file_name: str, sizer: ImageSizer | None) -> tuple[int, int] | None:
    if sizer is None:
        return None
    from fastinst.errors import ImageError

    try:
        return sizer(Path(file_name))
    except ImageError as error:
        raise _Refused(str(error)) from None


# ----------------------------------------------------------------------------------- annotations


def _parse_annotations(
    raw_annotations: list, name: str, parsed: ParsedCoco, keep_scores: bool, results: bool = False
) -> list[ParsedAnnotation]:
    images = {image.coco_id: image for image in parsed.images}
    category_ids = {category.coco_id for category in parsed.categories}
    standard = ANNOTATION_KEYS | {"score"} if keep_scores else ANNOTATION_KEYS
    mapper = _IdMapper(raw.get("id") for raw in raw_annotations if isinstance(raw, dict))
    seen: dict[int, str] = {}
    accepted = []
    for index, raw in enumerate(raw_annotations):
        file_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"annotations[{index}]" + (f" (id {_shown_id(file_id)})" if file_id is not None else "") + f" in {name}"
        try:
            ann = _parse_annotation(index, raw, where, parsed, images, category_ids, mapper, keep_scores,
                                    results)
        except _Refused as refusal:
            parsed.report.add(where, f"{refusal}; the annotation is left out", "refused")
            image_id = parsed.image_ids.get(_id_key(raw.get("image_id"))) if isinstance(raw, dict) else None
            if image_id is not None:
                parsed.incomplete_images.add(image_id)
            continue
        if ann.coco_id in seen:
            repeated, ann.coco_id = ann.coco_id, mapper.fresh()
            if not results:
                parsed.report.add(where, f"annotation id {repeated} is also {seen[repeated]}'s: given id "
                                         f"{ann.coco_id} (the object is kept)", "repaired")
        seen[ann.coco_id] = f"annotations[{index}]"
        ann.extra = _extra(raw, standard, where, parsed.report)
        accepted.append(ann)
    return accepted


def _parse_annotation(
    index: int, raw: Any, where: str, parsed: ParsedCoco, images: dict[int, ParsedImage],
    category_ids: set[int], mapper: _IdMapper, keep_scores: bool, results: bool,
) -> ParsedAnnotation:
    report = parsed.report
    if not isinstance(raw, dict):
        raise _Refused(f"must be an object, not {_kind(raw)}")
    if raw.get("id") is None or _id_key(raw["id"]) is None or raw["id"] == "":
        coco_id = mapper.fresh()   # an annotation's id only names it: an unusable one is replaced
        if not results:
            missing = "no 'id'" if raw.get("id") is None else f"id {_shown_id(raw['id'])} is no integer or string"
            report.add(where, f"{missing}: given id {coco_id}", "repaired")
    else:
        coco_id, finding = mapper(raw["id"])
        if finding:
            report.add(where, finding, "repaired")
    image, image_finding = _annotation_image(raw.get("image_id"), parsed, images)
    _refuse_ambiguous(raw.get("category_id"), parsed.ambiguous_category_ids)
    category_id, category_finding = _reference(raw.get("category_id"), parsed.category_ids, "category_id")
    if category_id is None:
        raise _Refused(f"category_id {_shown_id(raw.get('category_id'))} is not in categories")
    category_id = parsed.category_aliases.get(category_id, category_id)
    if category_id not in category_ids:
        raise _Refused(f"category_id {category_id} is not in categories")
    iscrowd, crowd_finding = _iscrowd(raw)
    segmentation = raw.get("segmentation")
    if segmentation in (None, [], {}) or (isinstance(segmentation, list) and all(p == [] for p in segmentation)):
        has_box = raw.get("bbox") is not None
        raise _Refused("only a bbox, no 'segmentation': an instance needs a mask (polygon or RLE); boxes alone "
                       "are not imported" if has_box else "no 'segmentation' (polygon or RLE)")
    counts, kind = _segmentation_counts(segmentation, image, where, report)
    area, bbox = rle.area_and_bbox(counts, image.height, image.width)
    if area == 0:
        raise _Refused("the mask is empty (zero area)")
    score, score_finding = _score(raw) if keep_scores else (None, "")
    if results and score is None:
        raise _Refused("no 'score': a result needs one (is this a dataset file rather than results?)")
    for finding in (image_finding, category_finding, crowd_finding, score_finding):
        if finding:
            report.add(where, finding, "repaired")
    if not results:
        _report_bad_geometry(raw, where, area, bbox, report)
    return ParsedAnnotation(coco_id, image.coco_id, category_id, counts, area, bbox, iscrowd, score,
                            None, index, raw.get("id"), kind)


def _annotation_image(value: Any, parsed: ParsedCoco, images: dict[int, ParsedImage]) -> tuple[ParsedImage, str]:
    """The image an ``image_id`` names, and the finding of :func:`_reference`."""
    _refuse_ambiguous(value, parsed.ambiguous_ids)
    coco_id, finding = _reference(value, parsed.image_ids, "image_id")
    if coco_id is None or coco_id not in images:
        raise _Refused(f"image_id {_shown_id(value)} is not in images (or its image was left out)")
    return images[coco_id], finding


def _refuse_ambiguous(value: Any, ambiguous: dict[Any, str]) -> None:
    """Refuse a reference to an id that entries of different files (or names) claim, also when it
    is written as another type (``"3"`` or ``3.0`` for ``3``), as :func:`_reference` reads it."""
    keys = [_id_key(value)]
    if isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            keys.append(("num", _int(value, "id")))
        except _Refused:
            pass
    for key in keys:
        if key in ambiguous:
            raise _Refused(ambiguous[key])


def _report_bad_geometry(raw: dict, where: str, area: int, bbox: tuple[float, ...], report: CocoReport) -> None:
    """Report an unusable ``bbox``/``area`` (negative, non-numeric, non-finite). Stored values always
    come from the mask, so a missing one is simply computed, without a finding."""
    given_bbox = raw.get("bbox")
    if given_bbox is not None and not _usable_box(given_bbox):
        report.add(where, f"bbox {given_bbox!r} replaced by the mask's {[int(v) for v in bbox]}", "repaired")
    given_area = raw.get("area")
    if given_area is not None and not (is_finite_number(given_area) and given_area > 0):
        report.add(where, f"area {_shown_id(given_area)} replaced by the mask's {area}", "repaired")


def _usable_box(box: Any) -> bool:
    if not isinstance(box, list) or len(box) != 4:
        return False
    if not all(is_finite_number(v) for v in box):
        return False
    return box[2] > 0 and box[3] > 0


def _iscrowd(raw: dict) -> tuple[bool, str]:
    """``iscrowd`` (0 or 1; ``true``/``false`` as they are) and a finding when it was written as
    ``"0"``/``"1"``, ``0.0``/``1.0`` or ``null`` (read as 0), as some converters write it.

    Raises:
        _Refused: any other value (``2``, ``"yes"``): whether the object is a crowd cannot be told.
    """
    value = raw.get("iscrowd", 0)
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value), ""
    if value is None:
        return False, "'iscrowd' null read as 0"
    number = value.strip() if isinstance(value, str) else value if is_finite_number(value) else None
    if number in ("0", "1", 0.0, 1.0):
        return bool(int(float(number))), f"'iscrowd' {value!r} read as {int(float(number))}"
    raise _Refused(f"'iscrowd' must be 0 or 1, got {_shown_id(value)}")


def _score(raw: dict) -> tuple[float | None, str]:
    """A result's ``score`` and a finding when it was written as a numeric string (``"0.87"``).

    Raises:
        _Refused: not a finite number (``NaN``, ``Infinity``, ``"high"``): no ranking can use it.
    """
    score = raw.get("score")
    if score is None:
        return None, ""
    if isinstance(score, str):
        try:
            number = float(score)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number, f"'score' {score!r} (a string) read as the number {number:g}"
    if not is_finite_number(score):
        raise _Refused(f"'score' must be a finite number, got {_shown_id(score)}")
    return float(score), ""


# ---------------------------------------------------------------------------------- segmentation


def _segmentation_counts(
    segmentation: Any, image: ParsedImage, where: str, report: CocoReport
) -> tuple[str, str]:
    """One COCO segmentation -> ``(compressed RLE counts at the image's size, kind)``."""
    if isinstance(segmentation, list):
        return _polygon_counts(segmentation, image, where, report), "polygon"
    if isinstance(segmentation, dict):
        return _rle_counts(segmentation, image, where, report)
    raise _Refused(f"'segmentation' must be a list of polygons or an RLE object, got {_kind(segmentation)}")


def _polygon_counts(polygons: list, image: ParsedImage, where: str, report: CocoReport) -> str:
    if not polygons or all(isinstance(p, list) and not p for p in polygons):
        raise _Refused("'segmentation' is empty (no polygon)")
    rings, dropped = [], []
    for part, polygon in enumerate(polygons):
        coords = _ring_coordinates(polygon, part)
        if coords.size % 2 or coords.size < 6:
            dropped.append(f"polygon {part} has {coords.size} coordinates")
        else:
            rings.append(coords)
    if not rings:
        raise _Refused(f"no polygon ring with at least 3 points ({'; '.join(dropped)})")
    for text in dropped:
        report.add(where, f"{text}; a ring needs at least 3 points (6 numbers, x and y in pairs): ring dropped",
                   "repaired")
    outside = _check_extent(rings, image)
    if outside:
        report.add(where, f"{outside} polygon points lie outside the {image.width}x{image.height} image: "
                          f"clipped to the image", "repaired")
    return rle.polygons_to_counts([ring.tolist() for ring in rings], image.height, image.width)


def _ring_coordinates(polygon: Any, part: int) -> np.ndarray:
    if not isinstance(polygon, list):
        raise _Refused(f"polygon {part} must be a list of numbers, got {_kind(polygon)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon):
        raise _Refused(f"polygon {part} must be a list of numbers")
    try:
        coords = np.asarray(polygon, dtype=np.float64)
    except OverflowError:   # an integer beyond a double
        coords = np.array([np.inf])
    if not np.isfinite(coords).all():
        raise _Refused(f"segmentation polygon {part} has a non-finite coordinate (NaN, Infinity or beyond a double)")
    return coords


def _check_extent(rings: list[np.ndarray], image: ParsedImage) -> int:
    """Number of points outside the image; raises for a point absurdly far outside."""
    margin = ABSURD_FACTOR * max(image.width, image.height)
    outside = 0
    for ring in rings:
        xs, ys = ring[0::2], ring[1::2]
        far = (xs < -margin) | (xs > image.width + margin) | (ys < -margin) | (ys > image.height + margin)
        if far.any():
            k = int(np.argmax(far))
            raise _Refused(f"polygon point ({xs[k]:g}, {ys[k]:g}) lies absurdly far outside the "
                           f"{image.width}x{image.height} image (refused before rasterising)")
        outside += int(((xs < 0) | (xs > image.width) | (ys < 0) | (ys > image.height)).sum())
    return outside


def _rle_counts(segmentation: dict, image: ParsedImage, where: str, report: CocoReport) -> tuple[str, str]:
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if isinstance(counts, str) and len(counts) >= 3 and counts[:2] in ("b'", 'b"') and counts[-1] == counts[1]:
        report.add(where, "RLE counts written as a Python bytes literal (b'...', what str() of pycocotools' "
                          "bytes gives): read without the b'' quotes", "repaired")
        counts = counts[2:-1]
    if not isinstance(size, list) or [v for v in size] != [image.height, image.width]:
        raise _Refused(f"RLE size {size!r} does not match the {image.width}x{image.height} image "
                       f"(expected [{image.height}, {image.width}], height first)")
    if isinstance(counts, str):
        try:
            runs = rle.string_to_runs(counts)
        except ValueError as error:
            raise _Refused(f"malformed compressed RLE counts: {error}") from None
        _check_runs(runs, image)
        return counts, "rle"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise _Refused("uncompressed RLE counts must be integers")
        if not all(0 <= c <= image.height * image.width for c in counts):
            raise _Refused(f"uncompressed RLE counts must lie in 0..{image.height * image.width} (the image's pixels)")
        _check_runs(np.asarray(counts, dtype=np.int64), image)
        return rle.uncompressed_to_counts(counts, image.height, image.width), "rle_uncompressed"
    raise _Refused("RLE 'counts' must be a string or a list of integers")


def _check_runs(runs: np.ndarray, image: ParsedImage) -> None:
    if (runs < 0).any():
        raise _Refused("RLE counts contain a negative run length")
    total = int(runs.sum())
    if total != image.height * image.width:
        raise _Refused(f"RLE counts cover {total} pixels but the {image.width}x{image.height} image has "
                       f"{image.height * image.width}")


def _claimed_by_several(claims: Dict[Any, List[Tuple[int, Any]]], entry: Callable[[int, Any], str], noun: str,
                        what: str, consequence: str) -> Dict[Any, str]:
    """Id key -> refusal message for each id that entries of different values claim (``claims``:
    id key -> [(entry index, value)]; ``entry`` names one entry in the message)."""
    ambiguous = {}
    for key, entries in claims.items():
        if len({value for _, value in entries}) > 1:
            named = ", ".join(entry(index, value) for index, value in entries)
            ambiguous[key] = (f"{noun} id {_shown_id(key[1])} is claimed by {len(entries)} entries of different "
                              f"{what} ({named}): {consequence}")
    return ambiguous
