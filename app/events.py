"""Small event actions and loaders the UI wires to components (each takes the session state)."""
from __future__ import annotations

from typing import Any, Callable

import cv2
import gradio as gr
import numpy as np

from app import canvas, correct_view, painter
from app.project import StudioError
from app.session import TOOLS, SessionState
from app.studio import Studio, png, png_rgba

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
    """Switch the click tool; the picture is redrawn only if an open polygon is dropped."""
    def handler(st: SessionState, value: str) -> list[Any]:
        had_points = bool(st.polygon)
        message = set_tool(st, value)
        return studio.refresh(st, message, "filter" if had_points and not st.polygon else "none")
    return handler


def set_tool(st: SessionState, value: str) -> str:
    """Switch what clicks on the Correct image do; leaving the polygon tool drops the points."""
    st.tool = value if value in TOOLS else "select"
    if st.tool != "polygon":
        st.polygon = []
    hints = {"polygon": "polygon: click the corners, Enter closes",
             "query": "query: click an object the model missed to get its mask and class; "
                      "click inside a placed proposal to place it again"}
    return hints.get(st.tool, "")


def cancel_polygon(st: SessionState) -> str:
    """Forget the polygon being drawn."""
    st.polygon = []
    return "polygon cancelled"


def on_correct_click(studio: Studio) -> Callable[[SessionState, canvas.Click], str]:
    """A click on a canvas (Inspect or Correct) at image pixel (x, y) with the tool the browser
    reports: select (the browser's pick), add a polygon vertex, or place a query (query tool)."""
    def action(st: SessionState, click: canvas.Click) -> str:
        if click.tool == "select":
            return studio.pick(st, click)
        st.canvas_seq = max(st.canvas_seq, click.seq)
        if st.image_id is None:
            raise StudioError("open an image first")
        if click.tool == "query":
            return correct_view.query_click(studio.project, st, click.x, click.y)
        return correct_view.polygon_click(st, click.x, click.y)
    return action


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


def painter_loader(studio: Studio, selected: bool) -> Callable[[SessionState], tuple[Any, str]]:
    """Load the painter with the image and the selected instance's mask, or with no mask."""
    def handler(st: SessionState) -> tuple[Any, str]:
        try:
            if st.image_id is None:
                raise StudioError("open an image first")
            image = studio.project.pixels(st.image_id)
            mask_path = None
            if selected:
                inst = next((i for i in studio.shown(st) if i.id == st.selected), None)
                if inst is None:
                    raise StudioError("select an instance to paint its mask")
                mask_path = png_rgba(painter.mask_rgba(inst.mask))
            height, width = image.shape[:2]
            value = painter.value(next(studio.tokens), png(image, studio.png_level), mask_path, width, height)
            return value, ("painting the selected mask: brush adds, eraser removes, then save" if selected
                           else "paint the new instance, then add it")
        except StudioError as e:
            gr.Warning(str(e))
            return gr.skip(), f"⚠ {e}"
    return handler
