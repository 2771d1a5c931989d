"""Per-session state, and the process-wide caches it points into.

``SessionState`` is what one browser tab remembers between events (which image, which instance,
slider positions). Gradio keeps it per session and deep-copies it, so it holds only small values:
ids and numbers, never an image, a mask or a model.

The big objects live once per process, keyed so that sessions can share them safely:
``ModelSlot`` holds the one model (with a version string that changes when a fine-tuned model is
swapped in), ``LRUCache`` holds decoded images by image id and predictions (each with the
explanation from the same forward pass) by ``(model version, image id)``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")

# what a click or drag on the Correct canvas does (drawn in the browser, see app.canvas); "new": a
# brush that starts a new mask; query: place a query where clicked (Project.place_query)
TOOLS = ("select", "brush", "eraser", "new", "polygon", "query")


@dataclass
class SessionState:
    """What one browser session is looking at. Small and copyable by design."""

    image_id: int | None = None
    selected: int | None = None          # annotation id of the selected instance
    min_score: float = 0.5               # confidence threshold for undecided predictions
    activation: str = "foreground"       # "foreground" or a class name
    tool: str = "select"                 # what a click on the Correct image does (TOOLS)
    tab: str = "inspect"                 # the visible view; only it is re-rendered
    show_rejected: bool = False
    revision: int | None = None          # the image revision last shown (edits are made against it)
    sent: dict[str, Any] = field(default_factory=dict)  # last value sent to each view output (paths, text)
    picker_choices: list[tuple[str, int]] = field(default_factory=list)  # instance picker's choices
    lists_sent: dict[str, int] = field(default_factory=dict)  # hash of the image/model pickers' last choices
    layers_for: tuple | None = None      # (image, model, instance) the Explain layer panels show
    asking: str = ""                     # open question: "" | "undecided" | "empty" | "switch" | "class"
    switch_to: str | None = None         # the model version a "switch" question is about
    new_class: str | None = None         # the new class name a "class" question is about
    class_for: str = ""                  # what asked it: "relabel" | "add" (a drawn mask)
    class_ok: str | None = None          # a new class name the person said yes to (made by the next label)
    inside_ok: int | None = None         # the accepted object a new mask inside it was confirmed for
    dup_iou: float = 0.9                 # same-class proposals overlapping this much are flagged
    status: str = ""                     # the status line last sent (a tab switch keeps it)
    canvas_seq: int = 0                  # the last canvas click handled (the browser's counter)
    edit_refused: int = 0                # the counter of the last applied canvas edit that was refused
    presses: int = 0                     # actions on an instance handled (the canvas's optimistic marks)
    moves: int = 0                       # next/previous presses handled (the canvas's optimistic next image)

    def select_image(self, image_id: int) -> None:
        """Move to another image: forget the per-image selection."""
        if image_id != self.image_id:
            self.image_id = image_id
            self.selected = None

    def place(self) -> str:
        """The person's place as a URL query (image, tab, threshold, selection, tool, filters)."""
        from urllib.parse import urlencode
        values = {"image": self.image_id, "tab": self.tab, "t": f"{self.min_score:.2f}",
                  "sel": self.selected, "tool": self.tool, "rej": int(self.show_rejected),
                  "dup": f"{self.dup_iou:.2f}"}
        return urlencode({k: v for k, v in values.items() if v is not None})

    def shown_image(self, place: str | None) -> int | None:
        """The image id a page's place (as the page holds it, see :meth:`place`) names, if any."""
        from urllib.parse import parse_qs
        try:
            return int(parse_qs(place or "").get("image", [""])[0])
        except ValueError:
            return None

    def restore(self, query: dict[str, str], tabs: tuple[str, ...]) -> None:
        """Take back a place written by :meth:`place` (bad or unknown values are ignored)."""
        def number(key: str, cast: Callable[[str], Any], low: float, high: float) -> Any:
            try:
                value = cast(query[key])
            except (KeyError, ValueError):
                return None
            return value if low <= value <= high else None
        image = number("image", int, 1, 2**63)
        if image is not None:
            self.select_image(image)
        self.selected = number("sel", int, 1, 2**63)
        self.min_score = number("t", float, 0.0, 1.0) or self.min_score
        self.dup_iou = number("dup", float, 0.0, 1.0) or self.dup_iou
        self.show_rejected = query.get("rej") == "1"
        if query.get("tab") in tabs:
            self.tab = query["tab"]
        if query.get("tool") in TOOLS:
            self.tool = query["tool"]


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used map with a fixed number of entries.

    ``get_or_create`` computes a missing value outside the cache lock but under a per-key lock, so
    two sessions asking for the same prediction run the model once, and unrelated keys do not wait.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marking it recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value``, evicting the least recently used entry when full."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        """The cached value, or ``create()`` stored and returned; ``create`` runs once per key."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            value = self.get(key)
            if value is None:
                value = create()
                self.put(key, value)
        with self._lock:
            self._key_locks.pop(key, None)
        return value

    def discard(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class ModelSlot:
    """The process's one model. ``run`` serialises forward passes; ``swap`` replaces the model
    (after fine-tuning) and changes ``version`` so cached predictions of the old one are not reused.
    """

    def __init__(self, predictor: Any, version: str, description: str = "", *,
                 weights: Path | None = None, preset: str | None = None, model: str = "fastinst") -> None:
        self._predictor = predictor
        self.version = version
        self.description = description
        self.weights = weights        # the file the model came from (fine-tuning starts from it)
        self.preset = preset
        self.model = model            # which model (a key of engines.load.MODELS)
        self._lock = threading.Lock()

    @property
    def device(self) -> Any:
        """The torch device the model runs on."""
        return self._predictor.device

    @property
    def predictor(self) -> Any:
        """The current Predictor (read-only use: class names, device)."""
        return self._predictor

    def run(self, fn: Callable[[Any], V]) -> V:
        """Call ``fn(predictor)`` while holding the model lock."""
        with self._lock:
            return fn(self._predictor)

    def swap(self, other: "ModelSlot") -> None:
        """Take over ``other``'s model; later predictions are cached under its version."""
        with self._lock:
            self._predictor = other.predictor
            self.version = other.version
            self.description = other.description
            self.weights = other.weights
            self.preset = other.preset
            self.model = other.model
