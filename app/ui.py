"""The Gradio wiring: builds the Blocks over the views' plain functions, and serves them.

Layout: a header (image navigation, review state, instance picker, confidence slider, status
line) above five tabs — Inspect, Explain, Correct, Fine-tune, COCO. Every event handler takes the
session's ``SessionState``, does one thing through ``app.project.Project``, and returns a full
refresh of the header and of the *visible* view (other views are skipped and redrawn when their
tab is opened), so each event costs one render. Rendered pictures are written as fast PNGs
straight into Gradio's cache (lossless, and cheaper than Gradio's own PNG encoder).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import cv2
import gradio as gr
import numpy as np

from app import correct_view, explain_view, inspect_view, painter, render, train_view
from app.config import StudioConfig, is_loopback
from app.project import ImageEntry, Instance, Project, StudioError
from app.session import TOOLS, LRUCache, SessionState

MODEL_QUEUE = "model"          # concurrency group of every event that may run the network
KEEP = object()                # a view output that did not change: re-send what the session has

VIEW_OUTPUTS = {"inspect": ("inspect_image", "instance_table", "instance_info"),
                "explain": ("explain_heatmap", "explain_info", "layer_strip", "layer_view"),
                "correct": ("correct_image",)}
VIEW_OUTPUT_NAMES = [name for names in VIEW_OUTPUTS.values() for name in names]
OUTPUT_NAMES = ["state", "image_picker", "review_state", "instance_picker", "status", "project_info",
                *VIEW_OUTPUT_NAMES]
TABS = ("inspect", "explain", "correct", "train", "coco")

CSS = """
#status { min-height: 1.6em; }
#status p { margin: 0; }
.ft-progress { font-family: var(--font); }
.ft-bar { height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden; }
.ft-fill { height: 100%; background: var(--color-accent); transition: width .4s; }
.ft-text { margin-top: 4px; font-size: 0.9em; }
#layer-strip img, #compare-image img { object-fit: contain; }
"""

KEYS_JS = """
() => {
  const keys = {a: "btn-accept", r: "btn-reject", Delete: "btn-delete", Backspace: "btn-delete",
                l: "btn-relabel", A: "btn-accept-all", m: "btn-reviewed", n: "btn-next", p: "btn-prev",
                e: "btn-edit-load", Enter: "btn-polygon-close", Escape: "btn-polygon-cancel"};
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (t && t.closest && t.closest("#mask-painter")) return;
    let id = null;
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && ev.key.toLowerCase() === "z") id = ev.shiftKey ? "btn-redo" : "btn-undo";
    else if (mod && ev.key.toLowerCase() === "y") id = "btn-redo";
    else if (mod || ev.altKey) return;
    else id = keys[ev.key];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null || el.disabled) return;
    ev.preventDefault();
    el.click();
  });
}
"""


# ----------------------------------------------------------------------------------- helpers

def cache_folder() -> Path:
    """Where the studio writes the pictures it serves (inside Gradio's cache, so that Gradio
    serves them and cleans them up)."""
    folder = Path(gr.utils.get_upload_folder()) / "fastinst"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def png_rgba(image: np.ndarray) -> str:
    """Write an (H,W,4) RGBA image as a PNG in the cache folder; returns its path."""
    path = cache_folder() / f"{uuid.uuid4().hex}.png"
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, [2, 1, 0, 3]]),
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise StudioError("could not encode a mask as PNG")
    path.write_bytes(data.tobytes())
    return str(path)


def png(image: np.ndarray, level: int = 1) -> str:
    """Write an RGB image as a lossless PNG inside Gradio's cache folder and return its path
    (Gradio serves it as is, without re-encoding). ``level`` is the zlib level: 0 stores (fastest,
    for a browser on this machine), 1 compresses quickly (for a remote browser)."""
    path = cache_folder() / f"{uuid.uuid4().hex}.png"
    ok, data = cv2.imencode(".png", np.ascontiguousarray(render.as_rgb(image)[:, :, ::-1]),
                            [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise StudioError("could not encode an image as PNG")
    path.write_bytes(data.tobytes())
    return str(path)


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (StudioError, OSError, ValueError, LookupError)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input or the world's state, shown as a message, not a crash."""
    from annotations import AnnotationError
    from fastinst import FastInstError
    return (*EXPECTED_ERRORS, AnnotationError, FastInstError)


def friendly(fn: Callable[..., str]) -> Callable[..., str]:
    """Run an action; an expected error becomes a warning toast and a ⚠ status message."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except _expected_errors() as e:
            gr.Warning(str(e))
            return f"⚠ {e}"
    return wrapper


# ------------------------------------------------------------------------------------ views

class Studio:
    """Per-process UI logic over one Project: computes the values every event returns."""

    def __init__(self, project: Project, png_level: int = 1) -> None:
        self.project = project
        self.png_level = png_level
        self.job = train_view.FineTuneJob()
        self.maps: LRUCache[np.ndarray] = LRUCache(64)   # activation maps and layer masks
        self._header = ""                                 # project line, rebuilt on "all" refreshes
        self.tokens = itertools.count(1)                  # painter sessions

    # ------------------------------------------------------------------ shared pieces

    def png(self, image: np.ndarray) -> str:
        """A rendered picture as a PNG file for an Image output."""
        return png(image, self.png_level)

    def shown(self, state: SessionState, revision: int | None = None) -> list[Instance]:
        """The instances visible with this session's filters (``revision``: the image's, if known)."""
        if state.image_id is None:
            return []
        return inspect_view.visible_instances(self.project.instances(state.image_id, revision),
                                              state.min_score, state.show_rejected)

    def selected(self, state: SessionState, shown: list[Instance]) -> Instance | None:
        """The selected instance if it is among the shown ones (else the selection is cleared)."""
        inst = next((i for i in shown if i.id == state.selected), None)
        if inst is None:
            state.selected = None
        return inst

    def image_choices(self) -> list[tuple[str, int]]:
        """(label, id) of every image for the image picker."""
        marks = {"reviewed": "✓", "in_progress": "…", "unreviewed": "·"}
        return [(f"{marks.get(e.review_state, '?')} {e.file_name}", e.id) for e in self.project.images()]

    def header_info(self) -> str:
        """Project line: dataset, model, progress."""
        images = self.project.images()
        done = sum(e.review_state == "reviewed" for e in images)
        name = self.project.store.dataset(self.project.dataset_id).name
        return (f"**FastInst Studio** · project *{name}* · {len(images)} images, {done} reviewed · "
                f"model `{self.project.model.version}` ({self.project.model.description})")

    def review_text(self, e: ImageEntry) -> str:
        """The image's review state and file name."""
        return f"`{e.file_name}` {e.width}×{e.height} · **{e.review_state.replace('_', ' ')}** · rev {e.revision}"

    # ---------------------------------------------------------------------- renders

    def zoom(self, image_id: int) -> int:
        """Screen zoom of an image (small images are drawn enlarged; clicks are divided by it)."""
        entry = self.project.image(image_id)
        return render.display_factor(entry.height, entry.width)

    def on_screen(self, state: SessionState, shown: list[Instance]) -> tuple[np.ndarray, list[Instance], int]:
        """The image and the shown instances at screen scale, and the zoom factor."""
        image = self.project.pixels(state.image_id)
        k = render.display_factor(*image.shape[:2])
        if k == 1:
            return image, shown, 1
        big = [dataclasses.replace(i, mask=render.enlarge_masks(i.mask, k), bbox=tuple(v * k for v in i.bbox))
               for i in shown]
        return render.enlarge(image, k), big, k

    def render_inspect(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Inspect's outputs: the overlay, the table (unchanged by a selection) and the details."""
        image, big, _ = self.on_screen(state, shown)
        out = {"inspect_image": self.png(inspect_view.render_overlay(image, big, state.selected)),
               "instance_table": KEEP if parts == "select" else inspect_view.instance_rows(shown),
               "instance_info": inspect_view.describe(inst)}
        return out

    def explain_maps(self, state: SessionState, inst: Instance | None) -> tuple[Any, Any, Any]:
        """(Explanation, activation map, layer masks or None) for the session's image, cached
        per model version so that moving between instances, heads and maps re-renders only."""
        version, image_id = self.project.model.version, state.image_id
        pred = self.project.prediction(image_id)
        exp = pred.explanation
        heat = self.maps.get_or_create(("act", version, image_id, state.activation),
                                       lambda: explain_view.activation_map(exp, state.activation, pred.class_names))
        masks = None
        if inst is not None and inst.query is not None and inst.model_version == version:
            masks = self.maps.get_or_create(("layers", version, image_id, inst.query),
                                            lambda: exp.layer_masks(inst.query))
        return exp, heat, masks

    def render_explain(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Explain's outputs; ``parts`` "layer" redraws only the head shown large, "activation"
        only the heatmap; the rest is kept."""
        small = self.project.pixels(state.image_id)
        k = render.display_factor(*small.shape[:2])
        image = render.enlarge(small, k)
        exp, heat_map, masks = self.explain_maps(state, inst)
        names = self.project.prediction(state.image_id).class_names
        out = dict.fromkeys(("explain_heatmap", "explain_info", "layer_strip", "layer_view"), KEEP)
        if parts != "layer":
            queries = explain_view.model_queries(shown, self.project.model.version)
            emphasis = inst if masks is not None else None
            points = (np.asarray(exp.query_points, np.float32) + 0.5) * k - 0.5
            out["explain_heatmap"] = self.png(
                explain_view.render_heatmap(image, heat_map, points, queries, emphasis))
        if parts not in ("layer", "activation"):
            out["explain_info"] = explain_view.describe_query(exp, inst, names, masks)
        layers_key = (state.image_id, self.project.model.version, inst.id if inst else None, state.layer)
        if parts == "filter" and masks is not None and state.layers_for == layers_key:
            return out   # same query and head as already shown: the layer pictures stay
        state.layers_for = layers_key
        if parts != "activation":
            if masks is None:
                out["layer_strip"] = out["layer_view"] = None
            elif parts == "layer":   # the strip stays; only the head shown large changes
                out["layer_view"] = self.png(explain_view.render_layer(
                    image, render.enlarge_masks(masks, k), render.KEPT_RGB, state.layer))
            else:
                strip, large = explain_view.render_layers(image, render.enlarge_masks(masks, k),
                                                          render.KEPT_RGB, state.layer)
                out["layer_strip"], out["layer_view"] = self.png(strip), self.png(large)
        return out

    def render_correct(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Correct's output: the overlay with the polygon being drawn."""
        image, big, k = self.on_screen(state, shown)
        out = inspect_view.render_overlay(image, big, state.selected)
        if state.polygon:
            out = render.polygon_preview(out, [(x * k + k // 2, y * k + k // 2) for x, y in state.polygon],
                                         (255, 255, 255))
        return {"correct_image": self.png(out)}

    def render_view(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                    parts: str) -> dict[str, Any]:
        """The visible tab's outputs (name -> value or KEEP); an unreadable image becomes a
        warning and empty pictures."""
        renderers = {"inspect": self.render_inspect, "explain": self.render_explain,
                     "correct": self.render_correct}
        if state.tab not in renderers:
            return {}
        if parts == "none":
            return dict.fromkeys(VIEW_OUTPUTS[state.tab], KEEP)
        try:
            return renderers[state.tab](state, shown, inst, parts)
        except StudioError as e:
            gr.Warning(str(e))
            return dict.fromkeys(VIEW_OUTPUTS[state.tab])

    def refresh(self, state: SessionState, message: str = "", parts: str = "all") -> list[Any]:
        """Values for OUTPUT_NAMES. ``parts``: "all" after anything that may change the image list
        or review state; "filter", "select", "layer" or "activation" after events that change only
        what is drawn (the image list is then re-sent as is); "none" when no picture changes.

        Outputs of hidden tabs are sent empty (their tab redraws them when opened) and unchanged
        visible ones are re-sent from ``state.sent``: both are cheap for Gradio, unlike
        ``gr.skip()``, which makes it rebuild the component's configuration."""
        values: dict[str, Any] = dict.fromkeys(OUTPUT_NAMES)
        values.update(state=state, status=message)
        full = parts == "all" or not self._header
        if full:
            self._header = self.header_info()
        values["project_info"] = self._header
        if state.image_id is None:     # a new session, or a race with another event: open the first
            first = self.project.neighbour(None, 0)
            if first is not None:
                state.select_image(first)
        if state.image_id is None:
            values["image_picker"] = gr.update(choices=self.image_choices(), value=None)
            values["review_state"] = "no image"
            return [values[name] for name in OUTPUT_NAMES]
        entry = self.project.image(state.image_id)
        state.revision = entry.revision
        shown = self.shown(state, entry.revision)
        inst = self.selected(state, shown)
        for name, value in self.render_view(state, shown, inst, parts).items():
            values[name] = state.sent.get(name) if value is KEEP else value
        state.sent = {name: values[name] for name in VIEW_OUTPUT_NAMES}
        values["image_picker"] = (gr.update(choices=self.image_choices(), value=state.image_id) if full
                                  else state.image_id)
        values["review_state"] = self.review_text(entry)
        # new choices cost Gradio a configuration rebuild: only when the list can have changed
        choices = inspect_view.instance_choices(shown)
        same_list = parts in ("select", "layer", "activation") or choices == state.picker_choices
        state.picker_choices = choices
        values["instance_picker"] = state.selected if same_list else gr.update(choices=choices,
                                                                               value=state.selected)
        return [values[name] for name in OUTPUT_NAMES]

    # --------------------------------------------------------------------- actions

    def open_image(self, state: SessionState, image_id: int | None) -> str:
        """Switch the session to another image (its picture is checked right away)."""
        if image_id is None:
            return ""
        entry = self.project.image(int(image_id))
        state.select_image(entry.id)
        self.project.pixels(entry.id)
        return f"opened {entry.file_name}"

    def predict(self, state: SessionState, force: bool = False) -> str:
        """Run the model on the session's image when it has not predicted it yet (or ``force``)."""
        if state.image_id is None:
            return ""
        n = self.project.predict(state.image_id, state.revision, force=force)
        return "" if n < 0 else f"{n} proposals from {self.project.model.version}"

    def pick_at(self, state: SessionState, x: int, y: int) -> str:
        """Select the instance under a clicked screen pixel (or clear the selection)."""
        k = self.zoom(state.image_id)
        state.selected = inspect_view.pick_instance(self.shown(state), x // k, y // k)
        return "" if state.selected is not None else "no instance there"




def build_app(project: Project, png_level: int = 1) -> gr.Blocks:
    """The studio's Blocks for ``project`` (launch with ``launch_kwargs()``); ``png_level``: see
    ``png``."""
    studio = Studio(project, png_level)
    names = project.class_names()
    num_heads = len(project.model.predictor.model.decoder.heads)
    with gr.Blocks(title="FastInst Studio", delete_cache=(900, 3600)) as demo:
        state = gr.State(SessionState())
        c: dict[str, Any] = {"state": state}
        c["project_info"] = gr.Markdown(elem_id="project-info")
        with gr.Row(elem_id="nav-row"):
            with gr.Column(scale=3, min_width=320):
                c["image_picker"] = gr.Dropdown(label="Image", elem_id="image-picker", allow_custom_value=True,
                                                filterable=True)
                c["review_state"] = gr.Markdown(elem_id="review-state")
            with gr.Column(scale=2, min_width=300):
                with gr.Row():
                    btn_prev = gr.Button("◀ Prev (P)", elem_id="btn-prev", size="sm", min_width=70)
                    btn_next = gr.Button("Next (N) ▶", elem_id="btn-next", size="sm", min_width=70)
                    btn_predict = gr.Button("Predict again", elem_id="btn-predict", size="sm", min_width=70)
                with gr.Row():
                    btn_reviewed = gr.Button("Mark reviewed (M)", elem_id="btn-reviewed", variant="primary",
                                             size="sm", min_width=70)
                    btn_reopen = gr.Button("Reopen", elem_id="btn-reopen", size="sm", min_width=70)
            with gr.Column(scale=3, min_width=320):
                c["instance_picker"] = gr.Dropdown(label="Selected instance", elem_id="instance-picker",
                                                   allow_custom_value=True)
                with gr.Row():
                    min_score = gr.Slider(inspect_view_floor(), 1.0, value=0.5, step=0.01, label="Confidence ≥",
                                          elem_id="min-score", scale=3)
                    show_rejected = gr.Checkbox(False, label="show rejected", elem_id="show-rejected", scale=1,
                                                min_width=100)
        c["status"] = gr.Markdown(elem_id="status")
        with gr.Tabs(elem_id="views") as tabs:
            with gr.Tab("Inspect", id="inspect", elem_id="tab-inspect") as tab_inspect:
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("Predictions and annotations — **click a mask to select it**")
                        c["inspect_image"] = gr.Image(show_label=False, elem_id="inspect-image", format="png",
                                                      interactive=False, buttons=["fullscreen"])
                    with gr.Column(scale=2):
                        c["instance_table"] = gr.Dataframe(headers=inspect_view.TABLE_HEADERS,
                                                           elem_id="instance-table", interactive=False,
                                                           label="Instances (click a row to select)")
                        c["instance_info"] = gr.Markdown(elem_id="instance-info")
                with gr.Accordion("All images", open=False, elem_id="gallery-box"):
                    gallery = gr.Gallery(elem_id="gallery", columns=8, height=260, allow_preview=False,
                                         format="png", label="Images (click to open)")
            with gr.Tab("Explain", id="explain", elem_id="tab-explain") as tab_explain:
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("**Instance activation (IA) map** — dots: the positions picked as "
                                    "queries; rings: the shown instances' queries; cross: the selected one")
                        c["explain_heatmap"] = gr.Image(show_label=False, elem_id="explain-heatmap",
                                                        format="png", interactive=False, buttons=["fullscreen"])
                    with gr.Column(scale=2):
                        activation = gr.Radio(explain_view.activation_choices(names), value="foreground",
                                              label="Heatmap shows", elem_id="activation-choice")
                        c["explain_info"] = gr.Markdown(elem_id="explain-info")
                gr.Markdown("**The selected query's mask after every decoder head** — blue: kept from "
                            "the previous head, green: added by this layer, red: removed by it.")
                c["layer_strip"] = gr.Image(show_label=False, elem_id="layer-strip", format="png",
                                            interactive=False, buttons=["fullscreen"])
                with gr.Row():
                    layer = gr.Slider(0, num_heads - 1, value=num_heads - 1, step=1,
                                      label="Head shown large (0 = the query before any layer)",
                                      elem_id="layer-slider", scale=1)
                    c["layer_view"] = gr.Image(show_label=False, elem_id="layer-view", format="png",
                                               interactive=False, buttons=["fullscreen"], scale=3)
            with gr.Tab("Correct", id="correct", elem_id="tab-correct") as tab_correct:
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("**Click** to select an instance, or to add a corner with the polygon tool")
                        c["correct_image"] = gr.Image(show_label=False, elem_id="correct-image", format="png",
                                                      interactive=False, buttons=["fullscreen"])
                    with gr.Column(scale=2):
                        tool = gr.Radio(list(TOOLS), value="select", label="Click tool", elem_id="tool")
                        with gr.Row():
                            btn_accept = gr.Button("Accept (A)", elem_id="btn-accept", variant="primary")
                            btn_reject = gr.Button("Reject (R)", elem_id="btn-reject", variant="stop")
                            btn_delete = gr.Button("Delete (Del)", elem_id="btn-delete")
                        btn_accept_all = gr.Button("Accept every shown proposal (Shift+A)",
                                                   elem_id="btn-accept-all")
                        with gr.Row(equal_height=True):
                            class_picker = gr.Dropdown(names, value=names[0] if names else None, label="Class",
                                                       elem_id="class-picker", scale=2)
                            btn_relabel = gr.Button("Relabel (L)", elem_id="btn-relabel", scale=1)
                        with gr.Row():
                            btn_undo = gr.Button("↶ Undo (Ctrl+Z)", elem_id="btn-undo")
                            btn_redo = gr.Button("↷ Redo (Ctrl+Y)", elem_id="btn-redo")
                        with gr.Row():
                            btn_poly_close = gr.Button("Close polygon (Enter)", elem_id="btn-polygon-close")
                            btn_poly_cancel = gr.Button("Cancel polygon (Esc)", elem_id="btn-polygon-cancel")
                        gr.Markdown(correct_view.shortcut_help(), elem_id="shortcuts")
                gr.Markdown("**Mask painter** — load the selected mask (E) or start a new one, paint with the "
                            "brush, remove with the eraser, then save it to the selected instance or add it "
                            "as a new instance of the chosen class.")
                editor = gr.HTML("", html_template=painter.TEMPLATE, css_template=painter.CSS,
                                 js_on_load=painter.JS, elem_id="mask-painter", container=True)
                with gr.Row():
                    btn_edit_load = gr.Button("Paint selected mask (E)", elem_id="btn-edit-load")
                    btn_edit_new = gr.Button("Start a new mask", elem_id="btn-edit-new")
                    btn_edit_save = gr.Button("Save painted mask to selected", elem_id="btn-edit-save",
                                              variant="primary")
                    btn_edit_add = gr.Button("Add painted mask as new instance", elem_id="btn-edit-add")
            with gr.Tab("Fine-tune", id="train", elem_id="tab-train") as tab_train:
                train_ui = build_train_tab(studio, c)
            with gr.Tab("COCO", id="coco", elem_id="tab-coco") as tab_coco:
                coco_ui = build_coco_tab()

        outputs = [c[n] for n in OUTPUT_NAMES]
        refresh = studio.refresh

        def act(fn: Callable[..., str], parts: str = "all") -> Callable[..., list[Any]]:
            """Wrap an action ``fn(state, *args) -> message`` into a handler returning OUTPUTS
            (``parts``: what the action can have changed, see ``Studio.refresh``)."""
            safe = friendly(fn)

            def handler(st: SessionState, *args: Any) -> list[Any]:
                return refresh(st, safe(st, *args), parts)
            return handler

        def act_select(fn: Callable[[SessionState, gr.SelectData], str], parts: str = "select") -> Callable[..., list[Any]]:
            """Like ``act`` for select events: Gradio passes the event data to a parameter
            annotated ``gr.SelectData``, so the handler declares one."""
            safe = friendly(fn)

            def handler(st: SessionState, evt: gr.SelectData) -> list[Any]:
                return refresh(st, safe(st, evt), parts)
            return handler

        def model_step(st: SessionState) -> list[Any]:
            """Second step after opening an image: predict if needed; skip everything if not."""
            message = friendly(studio.predict)(st)
            return refresh(st, message) if message else gr.skip()

        # navigation: open first, then (maybe) predict in the model queue
        nav = [
            (demo.load, lambda st: studio.open_image(st, st.image_id or project.neighbour(None, 0)), [state], "load"),
            (c["image_picker"].input, studio.open_image, [state, c["image_picker"]], "open_image"),
            (btn_next.click, lambda st: studio.open_image(st, project.neighbour(st.image_id, 1)), [state], "next_image"),
            (btn_prev.click, lambda st: studio.open_image(st, project.neighbour(st.image_id, -1)), [state], "previous_image"),
        ]
        for trigger, fn, inputs, api in nav:
            trigger(act(fn), inputs, outputs, api_name=api).then(
                model_step, [state], outputs, concurrency_id=MODEL_QUEUE, concurrency_limit=1, api_visibility="private")
        gallery.select(act_select(on_gallery(studio), "all"), [state], outputs, api_visibility="private").then(
            model_step, [state], outputs, concurrency_id=MODEL_QUEUE, concurrency_limit=1, api_visibility="private")
        demo.load(lambda: gallery_items(studio), None, gallery, api_visibility="private")
        btn_predict.click(act(lambda st: studio.predict(st, force=True)), [state], outputs,
                          concurrency_id=MODEL_QUEUE, concurrency_limit=1, api_name="predict")

        # selection and filters
        c["instance_picker"].input(act(select_instance, "select"), [state, c["instance_picker"]], outputs,
                                   api_name="select_instance")
        c["inspect_image"].select(act_select(lambda st, evt: studio.pick_at(st, *evt.index)), [state],
                                  outputs, api_visibility="private")
        c["instance_table"].select(act_select(select_row), [state], outputs, api_visibility="private")
        min_score.release(act(set_attr("min_score", float), "filter"), [state, min_score], outputs,
                          api_name="set_min_score", trigger_mode="always_last")
        show_rejected.input(act(set_attr("show_rejected", bool), "filter"), [state, show_rejected], outputs,
                            api_name="set_show_rejected")
        for tab, key in ((tab_inspect, "inspect"), (tab_explain, "explain"), (tab_correct, "correct"),
                         (tab_train, "train"), (tab_coco, "coco")):
            tab.select(act(set_attr("tab", str, key), "filter"), [state], outputs, api_visibility="private")

        # explain
        activation.input(act(set_attr("activation", str), "activation"), [state, activation], outputs,
                         api_name="set_activation")
        layer.release(act(set_attr("layer", int), "layer"), [state, layer], outputs, api_name="set_layer",
                      trigger_mode="always_last")

        # correct
        rev = lambda st: st.revision  # noqa: E731
        c["correct_image"].select(act_select(on_correct_click(studio), "filter"), [state], outputs,
                                  api_visibility="private")
        tool.input(set_tool_handler(studio), [state, tool], outputs, api_name="set_tool")
        btn_accept.click(act(lambda st: correct_view.set_state(project, st, "accepted", rev(st))), [state],
                         outputs, api_name="accept")
        btn_reject.click(act(lambda st: correct_view.set_state(project, st, "rejected", rev(st))), [state],
                         outputs, api_name="reject")
        btn_delete.click(act(lambda st: correct_view.delete(project, st, rev(st))), [state], outputs,
                         api_name="delete")
        btn_accept_all.click(act(lambda st: correct_view.accept_shown(project, st, studio.shown(st), rev(st))),
                             [state], outputs, api_name="accept_shown")
        btn_relabel.click(act(lambda st, name: correct_view.relabel(project, st, name, rev(st))),
                          [state, class_picker], outputs, api_name="relabel")
        btn_undo.click(act(lambda st: correct_view.undo(project, st, rev(st))), [state], outputs, api_name="undo")
        btn_redo.click(act(lambda st: correct_view.undo(project, st, rev(st), redo=True)), [state], outputs,
                       api_name="redo")
        btn_reviewed.click(act(lambda st: correct_view.mark_reviewed(project, st, rev(st))), [state], outputs,
                           api_name="mark_reviewed")
        btn_reopen.click(act(lambda st: correct_view.mark_reviewed(project, st, rev(st), reviewed=False)),
                         [state], outputs, api_name="reopen")
        btn_poly_close.click(act(lambda st, name: correct_view.polygon_close(project, st, name, rev(st))),
                             [state, class_picker], outputs, api_name="close_polygon")
        btn_poly_cancel.click(act(cancel_polygon, "filter"), [state], outputs, api_name="cancel_polygon")
        btn_edit_load.click(painter_loader(studio, selected=True), [state], [editor, c["status"]],
                            api_name="edit_selected")
        btn_edit_new.click(painter_loader(studio, selected=False), [state], [editor, c["status"]],
                           api_name="edit_new")
        btn_edit_save.click(act(lambda st, v: correct_view.save_painted(project, st, v, rev(st))),
                            [state, editor], outputs, api_name="save_mask")
        btn_edit_add.click(act(lambda st, v, name: correct_view.add_painted(project, st, v, name, rev(st))),
                           [state, editor, class_picker], outputs, api_name="add_mask")

        wire_train_tab(studio, train_ui, state)
        wire_coco_tab(studio, coco_ui, state, outputs, act, gallery)
    return demo


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
    return "polygon: click the corners, Enter closes" if st.tool == "polygon" else ""


def cancel_polygon(st: SessionState) -> str:
    """Forget the polygon being drawn."""
    st.polygon = []
    return "polygon cancelled"


def on_correct_click(studio: Studio) -> Callable[..., str]:
    """Click on the Correct image: select (select tool) or add a vertex (polygon tool)."""
    def action(st: SessionState, evt: gr.SelectData) -> str:
        x, y = (int(v) for v in evt.index)
        if st.tool == "polygon":
            k = studio.zoom(st.image_id)
            return correct_view.polygon_click(st, x // k, y // k)
        return studio.pick_at(st, x, y)
    return action


def on_gallery(studio: Studio) -> Callable[[SessionState, gr.SelectData], str]:
    """Open the image clicked in the gallery (gallery order = image order)."""
    def action(st: SessionState, evt: gr.SelectData) -> str:
        ids = [e.id for e in studio.project.images()]
        return studio.open_image(st, ids[int(evt.index)])
    return action


def gallery_items(studio: Studio, size: int = 160) -> list[tuple[str, str]]:
    """Thumbnails with file name and review state, in image order (unreadable files are skipped)."""
    items = []
    for e in studio.project.images()[:240]:
        try:
            img = studio.project.pixels(e.id)
        except StudioError:
            continue
        scale = size / max(img.shape[:2])
        thumb = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        items.append((studio.png(thumb), f"{e.file_name} · {e.review_state.replace('_', ' ')}"))
    return items


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


# ------------------------------------------------------------------------------ fine-tune tab

def build_train_tab(studio: Studio, c: dict[str, Any]) -> dict[str, Any]:
    """Components of the Fine-tune tab."""
    t: dict[str, Any] = {}
    gr.Markdown("Fine-tune the current model on the **reviewed** images (their accepted annotations), "
                "starting from its weights. Then compare before and after, and keep the better one.")
    with gr.Row():
        t["iterations"] = gr.Slider(1, 2000, value=100, step=1, label="Iterations", elem_id="ft-iterations")
        t["lr"] = gr.Number(1e-4, label="Learning rate", elem_id="ft-lr")
        t["batch"] = gr.Slider(1, 8, value=2, step=1, label="Batch size", elem_id="ft-batch")
    with gr.Row():
        t["start"] = gr.Button("Fine-tune on the corrections", elem_id="btn-train-start", variant="primary")
        t["stop"] = gr.Button("Stop", elem_id="btn-train-stop", variant="stop")
        t["use"] = gr.Button("Use the fine-tuned model", elem_id="btn-train-use")
    t["progress"] = gr.HTML(train_view.progress_html(train_view.JobSnapshot()), elem_id="train-progress")
    t["metrics"] = gr.Markdown(elem_id="train-metrics")
    t["compare_pick"] = gr.Dropdown(label="Compare on", elem_id="compare-picker", allow_custom_value=True)
    t["compare"] = gr.Image(label="Before (left) and after (right)", elem_id="compare-image", format="png",
                            interactive=False)
    t["message"] = gr.Markdown(elem_id="train-message")
    t["timer"] = gr.Timer(1.0, active=False)
    return t


def wire_train_tab(studio: Studio, t: dict[str, Any], state: gr.State) -> None:
    """Events of the Fine-tune tab: start/stop the worker, poll it, compare, swap models."""
    job = studio.job
    project = studio.project

    def start(iterations: float, lr: float, batch: float) -> tuple[str, Any]:
        settings = train_view.FineTuneSettings(int(iterations), float(lr), int(batch))
        message = friendly(lambda: job.start(project, settings))()
        return message, gr.Timer(active=job.snapshot().running)

    def poll(st: SessionState) -> tuple[Any, ...]:
        snap = job.snapshot()
        choices = [(project.image(i).file_name, i) for i in snap.compare_ids]
        compare = gr.skip()
        if snap.compare_ids and job.after:
            compare = compare_image(studio, st, snap.compare_ids[0])
        return (train_view.progress_html(snap), train_view.metrics_markdown(snap),
                gr.update(choices=choices, value=snap.compare_ids[0] if choices else None), compare,
                gr.Timer(active=snap.running))

    def pick(st: SessionState, image_id: Any) -> Any:
        return compare_image(studio, st, int(image_id)) if image_id not in (None, "") else gr.skip()

    def use() -> str:
        snap = job.snapshot()
        if snap.running or snap.checkpoint is None:
            return "⚠ no finished fine-tuning run to use"
        return friendly(lambda: train_view.use_checkpoint(project, Path(snap.checkpoint)))()

    t["start"].click(start, [t["iterations"], t["lr"], t["batch"]], [t["message"], t["timer"]],
                     api_name="finetune_start")
    t["stop"].click(lambda: job.stop(), None, t["message"], api_name="finetune_stop")
    t["timer"].tick(poll, [state], [t["progress"], t["metrics"], t["compare_pick"], t["compare"], t["timer"]],
                    api_name="finetune_poll")
    t["compare_pick"].input(pick, [state, t["compare_pick"]], t["compare"], api_name="compare_on")
    t["use"].click(use, None, t["message"], concurrency_id=MODEL_QUEUE, concurrency_limit=1, api_name="finetune_use")


def compare_image(studio: Studio, st: SessionState, image_id: int) -> Any:
    """The before/after picture for one of the compared images."""
    after = studio.job.after.get(image_id)
    if after is None:
        return gr.skip()
    before = studio.project.prediction(image_id)
    return studio.png(train_view.render_comparison(studio.project.pixels(image_id), before, after, st.min_score))


# ----------------------------------------------------------------------------------- COCO tab

def build_coco_tab() -> dict[str, Any]:
    """Components of the COCO tab."""
    k: dict[str, Any] = {}
    gr.Markdown("Import a COCO instances file (its images must be in the project's image folder), "
                "or export the accepted annotations as COCO JSON (masks as lossless RLE).")
    with gr.Row():
        with gr.Column():
            k["file"] = gr.File(label="COCO JSON to import", file_types=[".json"], elem_id="coco-import-file")
            k["import"] = gr.Button("Import", elem_id="btn-import")
        with gr.Column():
            k["only_reviewed"] = gr.Checkbox(True, label="only reviewed images", elem_id="export-reviewed-only")
            k["export"] = gr.Button("Export COCO JSON", elem_id="btn-export", variant="primary")
            k["download"] = gr.File(label="Exported COCO JSON", elem_id="coco-export-file", interactive=False)
    k["message"] = gr.Markdown(elem_id="coco-message")
    return k


def wire_coco_tab(studio: Studio, k: dict[str, Any], state: gr.State, outputs: list[Any],
                  act: Callable, gallery: gr.Gallery) -> None:
    """Events of the COCO tab."""
    project = studio.project

    def do_import(st: SessionState, path: str | None) -> str:
        if not path:
            raise StudioError("choose a COCO JSON file first")
        return "imported: " + project.import_coco(Path(path))

    def do_export(only_reviewed: bool) -> tuple[Any, str]:
        try:
            out = project.export_coco(bool(only_reviewed))
        except _expected_errors() as e:
            gr.Warning(str(e))
            return None, f"⚠ {e}"
        return str(out), f"exported to `{out}`"

    k["import"].click(act(do_import), [state, k["file"]], outputs, api_name="import_coco").then(
        lambda: gallery_items(studio), None, gallery, api_visibility="private")
    k["export"].click(do_export, [k["only_reviewed"]], [k["download"], k["message"]], api_name="export_coco")


# ------------------------------------------------------------------------------------ serving

def launch_kwargs() -> dict[str, Any]:
    """Look-and-feel arguments of ``Blocks.launch`` (Gradio 6 takes them there)."""
    return {"css": CSS, "js": KEYS_JS, "theme": gr.themes.Soft()}


def start(project: Project, *, host: str = "127.0.0.1", port: int | None = None,
          auth: tuple[tuple[str, str], ...] = (), block: bool = True) -> gr.Blocks:
    """Build the UI for ``project`` and serve it; with ``block=False`` return once it listens
    (tests, benchmarks). Exports are served from the project folder."""
    demo = build_app(project, png_level=0 if is_loopback(host) else 1)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, auth=list(auth) or None, show_error=True,
                prevent_thread_lock=not block, quiet=not block,
                allowed_paths=[str((project.work_dir / "exports").resolve()), str(cache_folder())],
                **launch_kwargs())
    return demo


def serve(config: StudioConfig) -> int:
    """Open the project described by ``config`` and serve it until interrupted."""
    from app.startup import open_project
    try:
        project = open_project(config)
    except Exception as e:  # noqa: BLE001 - startup problems are reported, not dumped
        print(f"launch.py: cannot open the project: {e}", file=sys.stderr)
        return 2
    start(project, host=config.host, port=config.port, auth=config.auth, block=True)
    return 0
