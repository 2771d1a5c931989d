"""Small event actions and loaders the UI wires to components (each takes the session state)."""
from __future__ import annotations

from typing import Any, Callable

import cv2
import gradio as gr
import numpy as np

from app import canvas, correct_view
from app.project import StudioError
from app.session import TOOLS, SessionState
from app.studio import Studio

def inspect_view_floor() -> float:
    """Lowest confidence the slider offers: predictions below it are not stored at all."""
    from app.project import PROPOSAL_FLOOR
    return PROPOSAL_FLOOR


def set_attr(name: str, cast: Callable[[Any], Any], fixed: Any = None) -> Callable[..., str]:
    """An action that sets one SessionState field from the event's value (or a fixed value)."""
    def action(st: SessionState, value: Any = None) -> str:
        setattr(st, name, cast(fixed if fixed is not None else value))
        return ""
    return action


def select_instance(st: SessionState, value: Any) -> str:
    """Select by instance id (from the picker or the API); empty clears the selection."""
    st.selected = None if value in (None, "") else int(value)
    return ""


def select_row(st: SessionState, evt: gr.SelectData) -> str:
    """Select the instance of a clicked table row (its first cell is the id)."""
    row = evt.row_value or []
    st.selected = int(row[0]) if row else None
    return ""


def set_tool_handler(studio: Studio) -> Callable[[SessionState, str], list[Any]]:
    """Switch the tool (the canvas reads it from the page: only a dropped selection is redrawn)."""
    def handler(st: SessionState, value: str) -> list[Any]:
        had = st.selected
        message = set_tool(st, value)
        return studio.refresh(st, message, "select" if st.selected != had else "none")
    return handler


def set_tool(st: SessionState, value: str) -> str:
    """Switch what clicks and drags on the Correct canvas do; returns a hint. The tools that draw
    a new instance (new mask, polygon) drop the selection, so that the Class picker keeps the
    class chosen for it (it follows the selection)."""
    st.tool = value if value in TOOLS else "select"
    if st.tool in ("new", "polygon"):
        st.selected = None
    hints = {"brush": "brush: paint on the selected mask (a new object: the new mask tool); Enter applies, Esc discards",
             "eraser": "eraser: erase from the selected mask; Enter applies, Esc discards",
             "new": "new mask: paint a new instance of the chosen class; Enter applies, Esc discards",
             "polygon": "polygon: click the corners; Enter, a double click or a click on the first corner's "
                        "yellow handle closes it",
             "query": "query: click an object the model missed to get its mask and class; "
                      "click inside a placed proposal to place it again (inside an accepted object: selects it)"}
    return hints.get(st.tool, "")


CanvasEvent = canvas.Click | canvas.MaskEdit | canvas.Action


def on_canvas_event(studio: Studio) -> Callable[[SessionState, CanvasEvent, str], str]:
    """A canvas event (Inspect or Correct): a click at image pixel (x, y) with the tool the browser
    reports -- select (the browser's pick) or place a query --, an applied edit, stored as a new
    instance of ``class_name`` or as its target's new mask, or an action on the instance the page
    showed selected (``on_action``)."""
    def action(st: SessionState, event: CanvasEvent, class_name: str) -> str:
        if isinstance(event, canvas.Click) and event.tool == "select":
            return studio.pick(st, event)
        st.canvas_seq = max(st.canvas_seq, event.seq)
        if isinstance(event, canvas.Action):
            return on_action(studio, st, event, class_name)
        if st.image_id is None:
            raise StudioError("open an image first")
        if isinstance(event, canvas.MaskEdit):
            try:
                return correct_view.apply_edit(studio.project, st, event, class_name, st.revision)
            except Exception:
                st.edit_refused = event.seq      # the browser keeps these strokes (see app.canvas)
                raise
        if event.tool == "query":
            return correct_view.query_click(studio.project, st, event.x, event.y)
        return ""
    return action


def on_action(studio: Studio, st: SessionState, event: canvas.Action, class_name: str) -> str:
    """Apply a canvas action to the instance it names, never to another one: the press is counted
    first, refused or not (the canvas keeps its optimistic mark until the answer to that press,
    ``app.canvas``); the named instance becomes the session's selection (the page showed it
    selected when the key was pressed). Refused (StudioError) when the page showed another image
    than the session's, or named no instance."""
    st.presses += 1
    if st.image_id is None:
        raise StudioError("open an image first")
    if event.image_id is not None and event.image_id != st.image_id:
        name = studio.project.image(st.image_id).file_name
        raise StudioError(f"the page was behind (it showed another image): nothing was changed; it now shows "
                          f"{name}, press the key again")
    if event.target is None:
        raise StudioError("select an instance first (click its mask or pick it in the list)")
    st.selected = event.target
    project, rev = studio.project, st.revision
    if event.action in ("accept", "reject"):
        return correct_view.set_state(project, st, f"{event.action}ed", rev)
    if event.action == "delete":
        return correct_view.delete(project, st, rev)
    if event.action == "relabel":
        return correct_view.relabel(project, st, class_name, rev)
    return studio.keep_one(st)


def gallery_items(studio: Studio, size: int = 160) -> list[tuple[str, str]]:
    """Thumbnails with file name and review state, in image order (unreadable files are skipped;
    thumbnails are made once per image and process)."""
    items = []
    for e in studio.project.images()[:240]:
        try:
            thumb = studio.thumbs.get_or_create(e.id, lambda: studio.png(thumbnail(studio.project.pixels(e.id), size)))
        except StudioError:
            continue
        items.append((thumb, f"{e.file_name} · {e.review_state.replace('_', ' ')}"))
    return items


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """The image scaled so that its longer side is ``size`` pixels."""
    scale = size / max(image.shape[:2])
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
