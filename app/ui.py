"""The Gradio wiring: lays out the studio and connects components to ``app.studio.Studio``.

Layout (sized so that the annotation canvas takes the window's height below three compact rows
at 1440x900 and up): one line with the project, the image's review state and the status; one
row of image navigation, undo / redo and model; one row with the selection, the confidence
filter and the actions on the selected instance; then six tabs — Inspect, Explain, Correct,
Fine-tune, Evaluate, COCO. Inspect and Correct show the canvas with the instance list (state icons
and legend) beside it; Correct's drawing tools sit in a one-row toolbar above its canvas. Every
event handler takes the session's ``SessionState``, does one thing through the views' plain
functions, and returns ``Studio.refresh``'s outputs. Components are kept in one dict ``c`` by name; everything a test
clicks has a stable ``elem_id``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from app import canvas, correct_view, evaluate_view, event_order, explain_view, inspect_view, train_view
from app.config import StudioConfig, is_loopback
from app.events import (gallery_items, on_canvas_event, select_instance, select_row, set_attr,
                        set_tool_handler)
from annotations import NotFoundError
from annotations.editing import NO_OBJECT_LEFT
from app.project import PROPOSAL_FLOOR, Project, StudioError
from app.session import TOOLS, SessionState
from app.studio import MODEL_QUEUE, OUTPUT_NAMES, Studio, _expected_errors, cache_folder, friendly

CSS = """
.gradio-container { max-width: 100% !important; padding: 0 !important; --layout-gap: 6px; }
.gradio-container .main.fillable { padding: 4px 12px !important; }
#views > .tab-wrapper { padding-bottom: 2px; margin-bottom: 4px; }
#inspect-image > .html-container, #correct-image > .html-container { padding: 4px 6px; }
/* the canvas's own legend says what the instance list's label says: hidden beside the list */
#inspect-image .anncanvas-legend, #correct-image .anncanvas-legend { display: none; }
/* the header: one line, then two rows of controls with their labels inline */
#top-row { gap: 12px; align-items: center; flex-wrap: nowrap; }
#project-info, #status { padding: 0 !important; }
#project-info { flex: 1 1 0 !important; min-width: 0 !important; }
#project-info p { margin: 0; font-size: 0.85em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#project-info:hover { overflow: visible; z-index: 20; }   /* the whole line under the pointer, as the status */
#project-info:hover p { position: relative; width: max-content; background: var(--background-fill-primary);
  box-shadow: var(--shadow-drop-lg); }
/* the status: one line, so the canvas below does not move; a longer message shows whole under the pointer */
#status { flex: 2 1 0 !important; min-width: 0 !important; height: 1.5em; overflow: hidden; }
#status p { margin: 0; font-size: 0.85em; }
#status:hover { overflow: visible; z-index: 20; }
#status:hover p { position: relative; background: var(--background-fill-primary); box-shadow: var(--shadow-drop-lg); }
#nav-row, #review-bar { gap: 6px; align-items: center; flex-wrap: wrap; }   /* one row each from 1280 px wide */
#nav-row > .form, #review-bar > .form { flex: 1 1 0; min-width: 200px !important; flex-wrap: nowrap; border: none; }
#review-bar > .form { min-width: 330px !important; }
#show-rejected { flex: none !important; width: max-content !important; }
#class-picker { flex: none !important; width: 120px !important; }
#nav-row > *, #review-bar > * { align-self: center; }
#top-row .block, #nav-row .block, #review-bar .block { padding: 2px 6px !important; }
#top-row button, #nav-row button, #review-bar button { white-space: nowrap; flex: none !important;
                                                      width: auto !important; min-width: max-content !important; }
#image-picker .container, #model-picker .container, #instance-picker .container {
  display: flex; flex-direction: row; align-items: center; gap: 6px; }
#image-picker .container > span, #model-picker .container > span, #instance-picker .container > span,
#min-score .head label { white-space: nowrap; margin: 0; }
#image-picker .container > .wrap, #model-picker .container > .wrap,
#instance-picker .container > .wrap { flex: 1; min-width: 0; }
#min-score div.wrap:has(> .head) { display: flex; flex-direction: row; align-items: center; gap: 6px; }
#min-score .head { flex: none; width: auto; margin: 0; gap: 6px; }
#min-score .slider_input_container { flex: 1; min-width: 80px; }
#min-score .min_value, #min-score .max_value { display: none; }
#min-score .tab-like-container input[type=number] { width: 4.5em; }
#review-state { align-self: center; font-size: 0.85em; white-space: nowrap; flex: none !important;
                width: max-content !important; }
#review-state p { margin: 0; }
#ask-text:has(span.md:empty) { display: none; }   /* no question asked: no gap either */
/* Inspect and Correct: the canvas, the instance list beside it */
#inspect-side, #correct-side { gap: 6px; }
#tool { display: flex; flex-direction: row; align-items: center; gap: 8px; padding: 2px 8px !important; }
#tool > span { margin: 0; }
#tool .wrap { flex-wrap: nowrap; gap: 6px; }
#tool .wrap label { padding: 0 10px; min-height: 26px; }
#tool-help p, #shortcuts p { font-size: 0.8em; margin: 0; }
.ft-progress { font-family: var(--font); }
.ft-bar { height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden; }
.ft-fill { height: 100%; background: var(--color-accent); transition: width .4s; }
.ft-text { margin-top: 4px; font-size: 0.9em; }
#compare-image img { object-fit: contain; }
#keys-overlay { position: fixed; inset: 0; background: rgba(0,0,0,0.45); z-index: 1000; display: flex;
                align-items: center; justify-content: center; }
#keys-overlay[hidden] { display: none; }
#keys-overlay .keys-card { background: var(--background-fill-primary); color: var(--body-text-color);
                           border-radius: 10px; padding: 18px 24px; max-width: 560px; }
#keys-overlay td { padding: 2px 10px 2px 0; }
#keys-overlay kbd { border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 0 6px; }
"""

KEYS_JS = """
() => {
  // keys that act on the selected instance work wherever an annotation canvas is shown
  const canvasKeys = {a: "btn-accept", r: "btn-reject", Delete: "btn-delete", Backspace: "btn-delete",
                      l: "btn-relabel", A: "btn-accept-all", k: "btn-keep-one"};
  // (the drawing keys -- Enter, Esc, E, B, [, ], Ctrl+Z on open strokes -- are the canvas's own: app/canvas.py)
  const keys = {m: "btn-reviewed", n: "btn-next", p: "btn-prev"};
  const shortcuts = __SHORTCUTS__;
  const overlay = document.createElement("div");
  overlay.id = "keys-overlay";
  overlay.hidden = true;
  overlay.innerHTML = "<div class='keys-card'><b>Keyboard shortcuts</b><table>" +
    shortcuts.map(([k, what]) => `<tr><td><kbd>${k}</kbd></td><td>${what}</td></tr>`).join("") +
    "</table><p>? or Esc closes this list</p></div>";
  document.body.appendChild(overlay);
  overlay.addEventListener("click", () => { overlay.hidden = true; });
  const canvasShown = () => [...document.querySelectorAll("#inspect-image canvas, #correct-image canvas")]
    .find((c) => c.offsetParent !== null);
  document.addEventListener("click", (ev) => {
    if (ev.target.closest && ev.target.closest("#btn-keys-help")) overlay.hidden = !overlay.hidden;
  }, true);
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    // Enter in a slider's number box applies the typed number (as leaving the box does)
    if (ev.key === "Enter" && t && t.matches && t.matches("input[type=number]")) {
      ev.preventDefault(); t.blur(); return;
    }
    // a key typed into a box is the box's; a focused tool radio or checkbox (just clicked) is not typing
    const typing = t && (t.isContentEditable || ["TEXTAREA", "SELECT"].includes(t.tagName) ||
                         (t.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(t.type)));
    if (typing) return;
    if (ev.key === "?" || (ev.key === "Escape" && !overlay.hidden)) {
      ev.preventDefault(); overlay.hidden = ev.key === "Escape" ? true : !overlay.hidden; return;
    }
    let id = null;
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && ev.key.toLowerCase() === "z") id = ev.shiftKey ? "btn-redo" : "btn-undo";
    else if (mod && ev.key.toLowerCase() === "y") id = "btn-redo";
    else if (mod || ev.altKey) return;
    else if (ev.key === "f" || ev.key === "F") {
      const c = canvasShown();
      if (c) { ev.preventDefault(); c.closest(".anncanvas").querySelector(".anncanvas-fit").click(); }
      return;
    }
    else id = keys[ev.key] || (canvasShown() ? canvasKeys[ev.key] : null);
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null || el.disabled) return;
    ev.preventDefault();
    el.click();
  });
}
"""

# ------------------------------------------------------------------------------------ layout

def build_header(c: dict[str, Any]) -> None:
    """One line (project, the image's review state, status) and one row of image navigation,
    undo / redo and model, with the labels inline: short enough that the canvas below fills the
    rest of the viewport."""
    with gr.Row(elem_id="top-row", equal_height=True):
        c["project_info"] = gr.Markdown(elem_id="project-info")
        c["review_state"] = gr.Markdown(elem_id="review-state", min_height=0)
        c["status"] = gr.Markdown(elem_id="status")
        c["keys_help"] = gr.Button("Keys (?)", elem_id="btn-keys-help", size="sm", min_width=50, scale=0)
    with gr.Row(elem_id="nav-row", equal_height=True):
        c["image_picker"] = gr.Dropdown(label="Image", elem_id="image-picker", allow_custom_value=True,
                                        filterable=True, scale=3, min_width=200)
        c["prev"] = gr.Button("◀ Prev (P)", elem_id="btn-prev", size="sm", min_width=70, scale=0)
        c["next"] = gr.Button("Next (N) ▶", elem_id="btn-next", size="sm", min_width=70, scale=0)
        c["predict"] = gr.Button("Predict again", elem_id="btn-predict", size="sm", min_width=70, scale=0)
        c["reviewed"] = gr.Button("Mark reviewed (M)", elem_id="btn-reviewed", variant="primary",
                                  size="sm", min_width=70, scale=0)
        c["reopen"] = gr.Button("Reopen", elem_id="btn-reopen", size="sm", min_width=70, scale=0)
        c["undo"] = gr.Button("↶ Undo (Ctrl+Z)", elem_id="btn-undo", size="sm", min_width=60, scale=0)
        c["redo"] = gr.Button("↷ Redo (Ctrl+Y)", elem_id="btn-redo", size="sm", min_width=60, scale=0)
        c["model_picker"] = gr.Dropdown(label="Model", elem_id="model-picker", scale=3,
                                        allow_custom_value=True, min_width=200)
        c["use_model"] = gr.Button("Use this model", elem_id="btn-use-model", size="sm", scale=0, min_width=70)
    build_questions(c)
    c["place"] = gr.Textbox("", visible="hidden", elem_id="place", show_label=False)
    c["prefetch"] = gr.Textbox("", visible="hidden", elem_id="canvas-prefetch", show_label=False)


def build_questions(c: dict[str, Any]) -> None:
    """The question box: one text and one row of answers per question (hidden until asked)."""
    c["ask_text"] = gr.Markdown(elem_id="ask-text")
    answers = {
        "undecided": [("accept", "Accept those ≥ threshold, reject the rest", "primary"),
                      ("reject", "Reject them all", "stop"), ("cancel", "Cancel", "secondary")],
        "empty": [("yes", "Reviewed, no objects", "primary"), ("no", "Cancel", "secondary")],
        "switch": [("yes", "Switch anyway", "primary"), ("no", "Cancel", "secondary")],
        "class": [("yes", "Make the new class", "primary"), ("no", "Cancel", "secondary")],
    }
    for question, buttons in answers.items():
        with gr.Row(visible=False, elem_id=f"ask-{question}") as c[f"ask_{question}"]:
            for key, label, variant in buttons:
                c[f"ask_{question}_{key}"] = gr.Button(label, elem_id=f"btn-ask-{question}-{key}",
                                                       variant=variant, size="sm")


LIST_LABEL = "Instances: ? proposed · ✓ accepted · ✗ rejected (click a mask or a row to select)"


def instance_list(elem_id: str) -> gr.Dataframe:
    """The instance list beside a canvas: one row per shown instance, top first, its state as an
    icon (the label is the legend)."""
    return gr.Dataframe(headers=inspect_view.TABLE_HEADERS, elem_id=elem_id, interactive=False, max_height=420,
                        label=LIST_LABEL)


def build_inspect_tab(c: dict[str, Any]) -> None:
    """The canvas (click to select), the instance list and the details beside it, the gallery."""
    with gr.Row(elem_id="inspect-row"):
        with gr.Column(scale=5, min_width=480):
            c["inspect_image"] = canvas.build("inspect-image")
        with gr.Column(scale=3, min_width=320, elem_id="inspect-side"):
            c["instance_table"] = instance_list("instance-table")
            c["instance_info"] = gr.Markdown(elem_id="instance-info")
    with gr.Accordion("All images", open=False, elem_id="gallery-box"):
        c["gallery"] = gr.Gallery(elem_id="gallery", columns=8, height=260, allow_preview=False, format="png",
                                  label="Images (click to open)")


def build_explain_tab(c: dict[str, Any], names: list[str], stages: bool = False) -> None:
    """FastInst: IA heatmap with query positions, the selected query's mask after every head (one
    large, switched in the browser). ``stages`` (QueryInst): proposal and stage boxes, the mask and
    box after every stage. ``stages`` is the launch model's; the help and the heatmap choice follow
    a model switch (:meth:`app.studio.Studio.render_explain`)."""
    with gr.Row():
        with gr.Column(scale=3):
            c["explain_help"] = gr.Markdown(explain_view.help_text(not stages), elem_id="explain-help")
            c["explain_heatmap"] = gr.Image(show_label=False, elem_id="explain-heatmap", format="png",
                                            interactive=False, buttons=["fullscreen"])
        with gr.Column(scale=2):
            c["activation"] = gr.Radio(explain_view.activation_choices(names), value="foreground",
                                       label="Heatmap shows", elem_id="activation-choice", visible=not stages)
            c["explain_info"] = gr.Markdown(elem_id="explain-info")
            c["explain_layers"] = explain_view.build_layers("explain-layers")


def build_review_bar(c: dict[str, Any], names: list[str]) -> None:
    """One row above the views: the selected instance, the confidence filter and the actions on
    the selected instance (their keys work wherever the canvas is, Inspect or Correct; the Class
    picker follows the selection)."""
    with gr.Row(elem_id="review-bar", equal_height=True):
        c["instance_picker"] = gr.Dropdown(label="Selected", elem_id="instance-picker", allow_custom_value=True,
                                           scale=3, min_width=170)
        c["min_score"] = gr.Slider(PROPOSAL_FLOOR, 1.0, value=0.5, step=0.01, label="Confidence ≥",
                                   elem_id="min-score", scale=3, min_width=260)
        c["show_rejected"] = gr.Checkbox(False, label="show rejected", elem_id="show-rejected",
                                         scale=0, min_width=100, container=False)
        c["accept"] = gr.Button("Accept (A)", elem_id="btn-accept", variant="primary", size="sm", min_width=60,
                                scale=0)
        c["reject"] = gr.Button("Reject (R)", elem_id="btn-reject", variant="stop", size="sm", min_width=60, scale=0)
        c["delete"] = gr.Button("Delete (Del)", elem_id="btn-delete", size="sm", min_width=60, scale=0)
        c["accept_all"] = gr.Button("Accept all shown (Shift+A)", elem_id="btn-accept-all", size="sm",
                                    min_width=90, scale=0)
        c["class_picker"] = gr.Dropdown(names, value=names[0] if names else None, label="Class",
                                        elem_id="class-picker", allow_custom_value=True, min_width=110, scale=1,
                                        show_label=False, container=False)
        c["relabel"] = gr.Button("Relabel (L)", elem_id="btn-relabel", size="sm", min_width=60, scale=0)


def build_correct_tab(c: dict[str, Any]) -> None:
    """The canvas with a one-row toolbar above it (the tools draw in the browser, see
    app.canvas), the instance list beside it, near-duplicates and the shortcuts below the list."""
    with gr.Row(elem_id="correct-row"):
        with gr.Column(scale=5, min_width=480):
            c["tool"] = gr.Radio([("new mask" if t == "new" else t, t) for t in TOOLS], value="select",
                                 label="Tool", elem_id="tool")
            c["correct_image"] = canvas.build("correct-image")
        with gr.Column(scale=3, min_width=320, elem_id="correct-side"):
            c["correct_table"] = instance_list("correct-table")
            with gr.Row(equal_height=True):
                c["dup_iou"] = gr.Slider(0.5, 1.0, value=0.9, step=0.01, label="Near-duplicate at mask IoU ≥",
                                         elem_id="dup-iou", scale=2)
                c["keep_one"] = gr.Button("Keep this one (K)", elem_id="btn-keep-one", size="sm", scale=1)
            gr.Markdown("Tools (above the canvas): **select**; **brush** / **eraser** on the selected mask (`E` "
                        "toggles, `[` `]` size); **new mask**; **polygon** (click the corners); **query** (the model's "
                        "mask and class where you click). **Apply** (`Enter`) stores the strokes, `Esc` discards them.",
                        elem_id="tool-help")
            gr.Markdown(correct_view.shortcut_help(), elem_id="shortcuts")
    # the API's way to store a drawn mask (the page sends its edits through the canvas's event)
    c["mask_edit"] = gr.Textbox("", visible=False, elem_id="mask-edit")
    c["edit_save"] = gr.Button(visible=False, elem_id="btn-edit-save")
    c["edit_add"] = gr.Button(visible=False, elem_id="btn-edit-add")


def build_app(project: Project, png_level: int = 1) -> gr.Blocks:
    """The studio's Blocks for ``project`` (launch with ``launch_kwargs()``); ``png_level``: see
    ``app.studio.png``."""
    studio = Studio(project, png_level)
    names = project.class_names()
    with gr.Blocks(title="FastInst Studio", delete_cache=(900, 3600), fill_width=True) as demo:
        c: dict[str, Any] = {"state": gr.State(SessionState())}
        build_header(c)
        build_review_bar(c, names)
        with gr.Tabs(elem_id="views") as c["views"]:
            with gr.Tab("Inspect", id="inspect", elem_id="tab-inspect") as c["tab_inspect"]:
                build_inspect_tab(c)
            with gr.Tab("Explain", id="explain", elem_id="tab-explain") as c["tab_explain"]:
                build_explain_tab(c, names, stages=project.model.model == "queryinst")
            with gr.Tab("Correct", id="correct", elem_id="tab-correct") as c["tab_correct"]:
                build_correct_tab(c)
            with gr.Tab("Fine-tune", id="train", elem_id="tab-train") as c["tab_train"]:
                train_ui = build_train_tab()
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate") as c["tab_evaluate"]:
                evaluate_ui = build_evaluate_tab()
            with gr.Tab("COCO", id="coco", elem_id="tab-coco") as c["tab_coco"]:
                coco_ui = build_coco_tab()
        w = Wiring(studio, c)
        wire_navigation(w, demo)
        switched = wire_models(w)
        wire_selection(w)
        wire_correct(w)
        wire_train_tab(studio, train_ui, c["state"], demo)
        # after "use the fine-tuned model" the header and the open image follow at once
        switched.append(w.on(train_ui["use"].click, w.follow_model, [c["state"]]))
        # the Fine-tune and Evaluate pickers show the current model: after a switch here, and when
        # their tab opens (another session can have switched)
        follow_model(switched + [c["tab_train"].select], train_ui["refresh"])
        follow_model(switched + [c["tab_evaluate"].select], wire_evaluate_tab(w, evaluate_ui, demo))
        wire_coco_tab(w, coco_ui)
    return demo


# ------------------------------------------------------------------------------------ events

def follow_model(events: list[Any], refresh: tuple[Callable[[], Any], list[Any]]) -> None:
    """After each of ``events`` (an event's dependency, or a trigger such as a tab's ``select``),
    run ``refresh = (fn, outputs)``: a view's own model pickers follow the project's model."""
    fn, outputs = refresh
    for event in events:
        if hasattr(event, "then"):
            event.then(fn, None, outputs, api_visibility="private")
        else:
            event(fn, None, outputs, api_visibility="private")


class Wiring:
    """What every event shares: the Studio, the components, the refresh outputs and wrappers
    that turn an action ``fn(state, *args) -> message`` into a handler returning them.

    Every event that reads or changes a session's state runs in one queue, one at a time and in
    the order the person acted (``on``): key presses are never dropped or reordered, and each
    sees the state the previous one left."""

    def __init__(self, studio: Studio, c: dict[str, Any]) -> None:
        self.studio, self.c = studio, c
        self.project = studio.project
        self.state = c["state"]
        self.outputs = [c[n] for n in OUTPUT_NAMES]

    def on(self, trigger: Callable[..., Any], fn: Callable[..., Any], inputs: list[Any],
           outputs: list[Any] | None = None, *, api_name: str | None = None, first: bool = False,
           **kwargs: Any) -> Any:
        """Register ``fn`` on ``trigger`` in the ordered queue; every trigger is handled, and the
        page shows the answers in the order of the presses (``app.event_order``; ``first``: the
        page's load event, sent at once)."""
        kwargs.setdefault("trigger_mode", "multiple")
        if api_name is None:
            kwargs.setdefault("api_visibility", "private")
        return event_order.ordered(trigger(fn, inputs, self.outputs if outputs is None else outputs,
                                           api_name=api_name, concurrency_id=MODEL_QUEUE,
                                           concurrency_limit=1, js=None if first else event_order.WAIT,
                                           **kwargs))

    def act(self, fn: Callable[..., str], parts: str = "all") -> Callable[..., list[Any]]:
        """Handler running ``fn`` then refreshing (``parts``: see ``Studio.refresh``). An action
        that changes data (``parts="all"``) closes an open question first."""
        safe, refresh = friendly(fn), self.studio.refresh

        def handler(st: SessionState, *args: Any) -> list[Any]:
            if parts != "all":
                return refresh(st, safe(st, *args), parts)
            st.asking = ""
            image_id, was = st.image_id, self.last_action(st.image_id)
            message = safe(st, *args)
            now = self.last_action(image_id) if image_id == st.image_id else was
            if now != was and now is not None and NO_OBJECT_LEFT in now and not now.startswith("undo of"):
                message += " · no accepted object is left: the image is no longer reviewed (M marks it again)"
            return refresh(st, message, parts)
        return handler

    def last_action(self, image_id: int | None) -> str | None:
        """The summary of the image's last edit in the store (None without an image): the store
        says there when an edit took the last accepted object from a reviewed image (an undo
        says "undo of ..." and a Reopen "set_review_state ...", so neither is taken for one)."""
        try:
            return None if image_id is None else self.project.image(image_id).last_action
        except NotFoundError:              # an image that went away has no state to compare
            return None

    def act_select(self, fn: Callable[[SessionState, gr.SelectData], str],
                   parts: str = "select") -> Callable[..., list[Any]]:
        """Like ``act`` for select events: Gradio passes the event data to a parameter annotated
        ``gr.SelectData``, so the handler declares one."""
        safe, refresh = friendly(fn), self.studio.refresh

        def handler(st: SessionState, evt: gr.SelectData) -> list[Any]:
            return refresh(st, safe(st, evt), parts)
        return handler

    def act_canvas(self, fn: Callable[..., str]) -> Callable[..., list[Any]]:
        """Like ``act`` for a canvas event (a click or an applied edit, see ``app.canvas``; the
        handler's inputs are the state and the Class picker): a selection refreshes the
        selection's parts, anything else (an edit, an action: ``act``) everything."""
        safe, refresh, change = friendly(fn), self.studio.refresh, self.act(fn)

        def handler(st: SessionState, class_name: str, evt: gr.EventData) -> list[Any]:
            try:
                event = canvas.read_event(evt._data)
            except (KeyError, TypeError, ValueError) as e:
                return refresh(st, f"⚠ unreadable canvas event: {e}", "none")
            if isinstance(event, canvas.Click) and event.tool == "select":
                return refresh(st, safe(st, event, class_name), "select")
            return change(st, event, class_name)
        return handler

    def follow_model(self, st: SessionState) -> Iterator[list[Any]]:
        """Redraw the session's image (predicting it if the model changed) and the header."""
        yield from self.studio.navigate(st, lambda x: x.image_id)

    def refresh_gallery(self, dependency: Any) -> None:
        """Chain a gallery refresh (review states changed)."""
        dependency.then(lambda: gallery_items(self.studio), None, self.c["gallery"], api_visibility="private")


def place_outputs(c: dict[str, Any]) -> list[Any]:
    """Components a reload sets back to the person's place (besides the refresh outputs)."""
    return [c["views"], c["min_score"], c["tool"], c["show_rejected"], c["dup_iou"]]


def wire_navigation(w: Wiring, demo: gr.Blocks) -> None:
    """Opening images (load, picker, next/previous, gallery), each followed by its prediction in
    the same event; a reload restores the place kept in the page's URL."""
    c, s, p, state = w.c, w.studio, w.project, w.state
    tabs = ("inspect", "explain", "correct", "train", "evaluate", "coco")

    def load(st: SessionState, request: gr.Request) -> Any:
        st.restore(dict(request.query_params) if request is not None else {}, tabs)
        if st.image_id is not None and st.image_id not in {e.id for e in p.images()}:
            st.select_image(p.neighbour(None, 0))
        place = [gr.Tabs(selected=st.tab), st.min_score, st.tool, st.show_rejected, st.dup_iou]
        for values in s.navigate(st, lambda x: x.image_id or p.neighbour(None, 0)):
            yield [*values, *place]

    def go(target: Callable[..., int | None], step: bool = False) -> Callable[..., Any]:
        """A navigation handler; ``step`` (next/previous): count the press first, the canvas keeps
        the image it drew ahead until the answer to that press arrives (``app.canvas``)."""
        def handler(st: SessionState, *args: Any) -> Any:
            st.moves += step
            yield from s.navigate(st, lambda x: target(x, *args))
        return handler

    def gallery(st: SessionState, evt: gr.SelectData) -> Any:
        ids = [e.id for e in p.images()]
        yield from s.navigate(st, lambda x: ids[int(evt.index)])

    opened = [w.on(demo.load, load, [state], w.outputs + place_outputs(c), api_name="load", first=True),
              w.on(c["image_picker"].input, go(lambda st, value: None if value in (None, "") else int(value)),
                   [state, c["image_picker"]], api_name="open_image"),
              w.on(c["next"].click, go(lambda st: p.neighbour(st.image_id, 1), True), [state], api_name="next_image"),
              w.on(c["prev"].click, go(lambda st: p.neighbour(st.image_id, -1), True), [state], api_name="previous_image"),
              w.on(c["gallery"].select, gallery, [state])]
    # once an image is shown, the next and previous ones' pictures and masks are written and the page
    # loads them ahead (outside the ordered queue: it changes neither the session nor the store)
    for event in opened:
        event.then(s.prefetch, [state], c["prefetch"], concurrency_id="prefetch", concurrency_limit=1,
                   api_visibility="private")
    c["prefetch"].change(None, [c["prefetch"]], None, api_visibility="private",
                         js="(v) => { if (v) window.dispatchEvent(new CustomEvent('anncanvas-prefetch', "
                            "{detail: v})); return []; }")
    demo.load(lambda: gallery_items(s), None, c["gallery"], api_visibility="private")
    w.on(c["predict"].click, w.act(lambda st: s.predict(st, force=True)), [state], api_name="predict")
    # the place travels in the URL: a reload (or a copied link) opens the same image, tab, settings
    c["place"].change(None, [c["place"]], None, api_visibility="private",
                      js="(q) => { if (q) history.replaceState(null, '', '?' + q); return []; }")


def wire_models(w: Wiring) -> list[Any]:
    """Switching the project's model version (asks first when it was not shown better, or its
    test AP is lower); returns the switch events, which the views with their own model pickers follow (``.then``)."""
    c, s, state = w.c, w.studio, w.state

    def switch(confirmed: bool) -> Callable[..., Any]:
        def handler(st: SessionState, version: str | None = None) -> Any:
            target = version if not confirmed else st.switch_to
            message = friendly(lambda x: s.switch_model(x, target, confirmed))(st)
            if st.asking == "switch" or message.startswith("⚠"):
                yield s.refresh(st, message)
                return
            yield from s.navigate(st, lambda x: x.image_id, note=message)
        return handler

    switched = [w.on(c["use_model"].click, switch(False), [state, c["model_picker"]], api_name="switch_model"),
                w.on(c["ask_switch_yes"].click, switch(True), [state], api_name="switch_model_confirmed")]
    w.on(c["ask_switch_no"].click, w.act(cancel_question, "filter"), [state])
    return switched


def cancel_question(st: SessionState) -> str:
    """Close the open question without doing anything."""
    st.asking, st.switch_to, st.new_class, st.class_ok = "", None, None, None
    return "cancelled: nothing changed"


def switch_tab(key: str) -> Callable[[SessionState], str]:
    """Show another view; the status line keeps its message (a reload that restores the tab
    selects it after the load event has written "opened ...")."""
    def action(st: SessionState) -> str:
        st.tab = key
        return st.status
    return action


def wire_selection(w: Wiring) -> None:
    """Selecting instances, filters, tab switches and the Explain controls."""
    c, s, state, on, act = w.c, w.studio, w.state, w.on, w.act
    on(c["instance_picker"].input, act(select_instance, "select"), [state, c["instance_picker"]],
       api_name="select_instance")
    on(c["inspect_image"].select, w.act_canvas(on_canvas_event(s)), [state, c["class_picker"]])
    on(c["instance_table"].select, w.act_select(select_row), [state])
    on(c["correct_table"].select, w.act_select(select_row), [state])
    on(c["min_score"].release, act(set_attr("min_score", float), "filter"), [state, c["min_score"]],
       api_name="set_min_score", trigger_mode="always_last")
    on(c["show_rejected"].input, act(set_attr("show_rejected", bool), "filter"), [state, c["show_rejected"]],
       api_name="set_show_rejected")
    on(c["dup_iou"].release, act(set_attr("dup_iou", float), "filter"), [state, c["dup_iou"]],
       api_name="set_duplicate_iou", trigger_mode="always_last")
    for key in ("inspect", "explain", "correct", "train", "evaluate", "coco"):
        on(c[f"tab_{key}"].select, act(switch_tab(key), "filter"), [state], api_name=f"show_{key}")
    on(c["activation"].input, act(set_attr("activation", str), "activation"), [state, c["activation"]],
       api_name="set_activation")


def on_shown_image(studio: Studio, fn: Callable[..., str]) -> Callable[..., str]:
    """An edit that takes the page's place as its last argument and runs only if the page shows
    the session's image: a key pressed while the page is behind never changes an image the person
    cannot see (the page is brought up to date instead). An empty place (an API call) is not checked."""
    def action(st: SessionState, *args: Any) -> str:
        *args, place = args
        shown = st.shown_image(place)
        if shown is not None and st.image_id is not None and shown != st.image_id:
            name = studio.project.image(st.image_id).file_name
            raise StudioError(f"the page was behind (it showed another image): nothing was changed; it now "
                              f"shows {name}, press the key again")
        return fn(st, *args)
    return action


def api_edit(st: SessionState, text: str, selected: bool) -> canvas.MaskEdit:
    """An edit sent through the API (``canvas.edit_value``'s JSON): ``/save_mask`` edits the
    selected instance, ``/add_mask`` adds a new one."""
    try:
        edit = canvas.read_edit(text)
    except ValueError as e:
        raise StudioError(f"unreadable edit: {e}") from None
    if selected and st.selected is None:
        raise StudioError("select an instance first (click its mask or pick it in the list)")
    return dataclasses.replace(edit, target=st.selected if selected else None, image_id=None)


def counted(fn: Callable[..., str]) -> Callable[..., str]:
    """An action on the selected instance that counts the press first, refused or not: the canvas
    keeps its optimistic mark until the answer to that press arrives (``app.canvas``; with a canvas
    shown the page sends these presses as canvas actions, ``app.events.on_action``, which count
    them the same way)."""
    def action(st: SessionState, *args: Any) -> str:
        st.presses += 1
        return fn(st, *args)
    return action


def wire_correct(w: Wiring) -> None:
    """Review actions and drawn masks: each one store edit, saved at once."""
    c, s, p, state, on = w.c, w.studio, w.project, w.state, w.on
    rev = lambda st: st.revision  # noqa: E731 - the revision the session last saw
    on(c["correct_image"].select, w.act_canvas(on_canvas_event(s)), [state, c["class_picker"]])
    on(c["tool"].input, set_tool_handler(s), [state, c["tool"]], api_name="set_tool")
    actions = [
        ("accept", lambda st: correct_view.set_state(p, st, "accepted", rev(st)), [], "accept"),
        ("reject", lambda st: correct_view.set_state(p, st, "rejected", rev(st)), [], "reject"),
        ("delete", lambda st: correct_view.delete(p, st, rev(st)), [], "delete"),
        ("accept_all", lambda st: correct_view.accept_shown(p, st, s.shown(st), rev(st)), [], "accept_shown"),
        ("keep_one", s.keep_one, [], "keep_one"),
        ("relabel", lambda st, name: correct_view.relabel(p, st, name, rev(st)), ["class_picker"], "relabel"),
        ("undo", lambda st: correct_view.undo(p, st, rev(st)), [], "undo"),
        ("redo", lambda st: correct_view.undo(p, st, rev(st), redo=True), [], "redo"),
        ("edit_save", lambda st, v: correct_view.apply_edit(p, st, api_edit(st, v, True), "", rev(st)),
         ["mask_edit"], "save_mask"),
        ("edit_add", lambda st, v, name: correct_view.apply_edit(p, st, api_edit(st, v, False), name, rev(st)),
         ["mask_edit", "class_picker"], "add_mask"),
    ]
    for button, fn, extra, api in actions:
        fn = on_shown_image(s, fn)
        if button in canvas.ACTIONS:   # the canvas draws these at once and counts the presses
            fn = counted(fn)
        on(c[button].click, w.act(fn), [state, *(c[n] for n in extra), c["place"]], api_name=api)
    reviews = [("reviewed", None, "mark_reviewed"), ("ask_undecided_accept", "accept", "review_accept_shown"),
               ("ask_undecided_reject", "reject", "review_reject_undecided"),
               ("ask_empty_yes", "empty", "review_no_objects")]
    for button, answer, api in reviews:
        w.refresh_gallery(on(c[button].click, w.act(on_shown_image(s, lambda st, a=answer: s.mark_reviewed(st, a))),
                             [state, c["place"]], api_name=api))
    for button in ("ask_undecided_cancel", "ask_empty_no", "ask_class_no"):
        on(c[button].click, w.act(cancel_question, "filter"), [state])
    on(c["ask_class_yes"].click, w.act(lambda st: correct_view.make_class(p, st, rev(st))), [state],
       api_name="make_class")
    w.refresh_gallery(on(c["reopen"].click, w.act(on_shown_image(s, lambda st: correct_view.reopen(p, st, rev(st)))),
                         [state, c["place"]], api_name="reopen"))


# ------------------------------------------------------------------------------ fine-tune tab

def build_train_tab() -> dict[str, Any]:
    """Components of the Fine-tune tab (elem ids used by tests)."""
    t: dict[str, Any] = {}
    gr.Markdown("Fine-tune a model on the **reviewed** images in a separate worker process. The reviewed images "
                "split three ways, fixed per image: *training* images teach the model, *validation* images choose "
                "when to stop and which checkpoint to keep, *test* images only measure the starting model and the "
                "chosen one at the end (with 95% intervals). A new model is offered only when its gain on the test "
                "images is clearly more than noise.")
    t["split"] = gr.Markdown(elem_id="ft-split")
    with gr.Row():
        t["start_from"] = gr.Dropdown(label="Start from model version", elem_id="ft-start-from",
                                      allow_custom_value=True, scale=3)
        t["start"] = gr.Button("Fine-tune on the reviewed images", elem_id="btn-train-start", variant="primary",
                               scale=2)
        t["stop"] = gr.Button("Stop", elem_id="btn-train-stop", variant="stop", scale=1)
        t["resume"] = gr.Button("Resume", elem_id="btn-train-resume", scale=1)
        t["use"] = gr.Button("Use the new model", elem_id="btn-train-use", scale=1, interactive=False)
    with gr.Accordion("Settings (0 = the one-click default)", open=False, elem_id="ft-settings"):
        with gr.Row():
            t["iterations"] = gr.Number(0, label="Iterations", precision=0, elem_id="ft-iterations")
            t["lr"] = gr.Number(0, label="Learning rate", elem_id="ft-lr")
            t["batch"] = gr.Number(0, label="Images per iteration", precision=0, elem_id="ft-batch")
    t["message"] = gr.Markdown(elem_id="train-message")
    t["progress"] = gr.HTML(train_view.progress_html(None), elem_id="train-progress")
    with gr.Row():
        t["loss_plot"] = gr.LinePlot(x="iteration", y="loss", color="series", title="Loss (smoothed, with its parts)",
                                     elem_id="ft-loss-plot", height=300)
        t["ap_plot"] = gr.LinePlot(x="iteration", y="AP", color="series",
                                   title="Validation mask AP (chooses the checkpoint; not a result)",
                                   elem_id="ft-ap-plot", height=300, y_lim=[0, 100])
    with gr.Row():
        t["metrics"] = gr.Markdown(elem_id="train-metrics")
        t["weights"] = gr.Markdown(elem_id="train-weights")
    t["versions"] = gr.Dataframe(headers=train_view.VERSION_HEADERS, elem_id="ft-versions", interactive=False,
                                 label="Model versions (newest first)")
    t["compare_pick"] = gr.Dropdown(label="Compare before and after on a test image", elem_id="compare-picker",
                                    allow_custom_value=True, interactive=False)
    t["compare"] = gr.Image(label="Before (left) and after (right); thick outlines: what changed", format="png",
                            elem_id="compare-image", interactive=False, buttons=["fullscreen"])
    t["timer"] = gr.Timer(1.0, active=False)
    return t


def wire_train_tab(studio: Studio, t: dict[str, Any], state: gr.State, demo: gr.Blocks) -> None:
    """Events of the Fine-tune tab: start/stop/resume the worker, poll the store, compare, swap models."""
    project = studio.project
    poll_outputs = [t[n] for n in ("progress", "loss_plot", "ap_plot", "metrics", "weights", "versions", "split",
                                   "start_from", "compare_pick", "timer", "use")]

    def poll() -> tuple[Any, ...]:
        run = train_view.latest_run(project)
        versions = [v.name for v in project.store.list_model_versions()]
        test = train_view.test_choices(project, run) if train_view.can_compare(run) else []
        return (train_view.progress_html(run), train_view.loss_frame(project, run), train_view.ap_frame(project, run),
                train_view.metrics_markdown(run), train_view.weights_markdown(run),
                train_view.version_rows(project), train_view.split_markdown(project),
                gr.update(choices=versions, value=project.model.version),
                gr.update(choices=test, value=test[0][1] if test else None, interactive=bool(test)),
                gr.Timer(active=train_view.is_active(run)),
                gr.update(interactive=train_view.can_use(project, run)))

    def start(start_from: str | None, iterations: float, lr: float, batch: float) -> tuple[str, Any]:
        message = friendly(lambda: train_view.start(project, start_from, iterations or 0, lr or 0, batch or 0))()
        return message, gr.Timer(active=True)

    def compare(st: SessionState, image_id: Any) -> Any:
        if image_id in (None, ""):
            return gr.skip()
        try:
            return studio.png(train_view.compare(project, studio.versions, int(image_id), st.min_score))
        except _expected_errors() as e:
            gr.Warning(str(e))
            return gr.skip()

    t["start"].click(start, [t["start_from"], t["iterations"], t["lr"], t["batch"]], [t["message"], t["timer"]],
                     api_name="finetune_start")
    t["stop"].click(friendly(lambda: train_view.stop(project)), None, t["message"], api_name="finetune_stop")
    t["resume"].click(lambda: (friendly(lambda: train_view.resume(project))(), gr.Timer(active=True)), None,
                      [t["message"], t["timer"]], api_name="finetune_resume")
    t["timer"].tick(poll, None, poll_outputs, api_name="finetune_poll")
    t["compare_pick"].input(compare, [state, t["compare_pick"]], t["compare"], concurrency_id=MODEL_QUEUE,
                            concurrency_limit=1, api_name="compare_on")
    t["use"].click(friendly(lambda: train_view.use_version(project, None)), None, t["message"],
                   concurrency_id=MODEL_QUEUE, concurrency_limit=1, api_name="finetune_use")
    # a page opened (or reloaded) shows the store's latest run, and follows it while it is active
    demo.load(poll, None, poll_outputs, api_visibility="private")
    t["refresh"] = (poll, poll_outputs)


# ------------------------------------------------------------------------------- evaluate tab

def build_evaluate_tab() -> dict[str, Any]:
    """Components of the Evaluate tab."""
    v: dict[str, Any] = {}
    with gr.Row():
        v["version"] = gr.Dropdown(label="Model version", elem_id="ev-version", allow_custom_value=True, scale=3)
        v["scope"] = gr.Radio(list(evaluate_view.SCOPES), value=evaluate_view.SCOPES[0], label="Images",
                              elem_id="ev-scope", scale=2)
        v["min_score"] = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Count detections scoring ≥",
                                   elem_id="ev-min-score", scale=2)
        v["run"] = gr.Button("Evaluate", elem_id="btn-evaluate", variant="primary", scale=1)
    v["summary"] = gr.Markdown(elem_id="ev-summary")
    with gr.Row():
        with gr.Column(scale=2):
            v["images"] = gr.Dataframe(headers=evaluate_view.IMAGE_HEADERS, elem_id="ev-images", interactive=False,
                                       label="Images, worst first (click one to see its errors)")
            v["confusion"] = gr.Dataframe(elem_id="ev-confusion", interactive=False,
                                          label="Confusion at IoU 0.5 (rows: the objects, columns: the prediction)")
        with gr.Column(scale=3):
            v["image"] = gr.Image(label="green: correct · red: false positive · orange: wrong class · yellow: missed",
                                  format="png", elem_id="ev-image", interactive=False, buttons=["fullscreen"])
    with gr.Row():
        v["cmp_version"] = gr.Dropdown(label="Side by side: the current model and", elem_id="cmp-version",
                                       allow_custom_value=True, scale=3)
        v["cmp_run"] = gr.Button("Compare on the open image", elem_id="btn-compare-models", scale=1)
    v["cmp_image"] = gr.Image(label="Left: the current model · right: the other · thick outlines: found by one only",
                              format="png", elem_id="cmp-image", interactive=False, buttons=["fullscreen"])
    v["review"] = gr.Button("Review next: rank the unreviewed images by how unsure the model is",
                            elem_id="btn-review-next")
    v["review_table"] = gr.Dataframe(headers=evaluate_view.REVIEW_HEADERS, elem_id="ev-review-next",
                                     interactive=False, label="Most uncertain first (click one to open it)")
    return v


def wire_evaluate_tab(w: Wiring, v: dict[str, Any], demo: gr.Blocks) -> tuple[Callable[[], Any], list[Any]]:
    """Events of the Evaluate tab (model passes run in the model's concurrency group)."""
    studio, project = w.studio, w.project
    last: dict[str, Any] = {}

    def run(version: str | None, scope: str, min_score: float) -> tuple[Any, ...]:
        try:
            ev = evaluate_view.evaluate(project, studio.versions, version or project.model.version, scope,
                                        float(min_score))
        except _expected_errors() as e:
            gr.Warning(str(e))
            return f"⚠ {e}", gr.skip(), gr.skip(), gr.skip()
        last["ev"] = ev
        rows = evaluate_view.image_rows(project, ev)
        picture = studio.png(evaluate_view.render_errors(project, ev, rows[0][0])) if rows else None
        return evaluate_view.summary_markdown(ev), rows, evaluate_view.confusion_frame(ev), picture

    def pick(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        if "ev" not in last or not row:
            return gr.skip()
        return studio.png(evaluate_view.render_errors(project, last["ev"], int(row[0])))

    def review(version: str | None) -> Any:
        try:
            return evaluate_view.review_next(project, studio.versions, version or project.model.version)
        except _expected_errors() as e:
            gr.Warning(str(e))
            return gr.skip()

    def open_row(st: SessionState, evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        yield from studio.navigate(st, lambda x: int(row[0]) if row else x.image_id)

    v["run"].click(run, [v["version"], v["scope"], v["min_score"]],
                   [v["summary"], v["images"], v["confusion"], v["image"]], concurrency_id=MODEL_QUEUE,
                   concurrency_limit=1, api_name="evaluate")
    v["images"].select(pick, None, v["image"], api_visibility="private")
    v["review"].click(review, [v["version"]], v["review_table"], concurrency_id=MODEL_QUEUE, concurrency_limit=1,
                      api_name="review_next")
    def side_by_side(st: SessionState, other: str | None) -> Any:
        try:
            if st.image_id is None:
                raise StudioError("open an image first")
            return studio.png(evaluate_view.side_by_side(project, studio.versions, other or "", st.image_id,
                                                         st.min_score))
        except _expected_errors() as e:
            gr.Warning(str(e))
            return gr.skip()

    v["cmp_run"].click(side_by_side, [w.state, v["cmp_version"]], v["cmp_image"], concurrency_id=MODEL_QUEUE,
                       concurrency_limit=1, api_name="compare_models")
    w.on(v["review_table"].select, open_row, [w.state])

    def versions() -> tuple[Any, Any]:
        names = [m.name for m in project.store.list_model_versions()]
        others = [n for n in names if n != project.model.version]
        return (gr.update(choices=names, value=project.model.version),
                gr.update(choices=others, value=others[-1] if others else None))
    demo.load(versions, None, [v["version"], v["cmp_version"]], api_visibility="private")
    return versions, [v["version"], v["cmp_version"]]


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
    gr.Markdown("**Add images** from this computer: several files or a .zip. Exact duplicates (same content) "
                "are skipped; files are stored in the project's image folder under `uploads/`, never overwriting.")
    with gr.Row():
        k["images"] = gr.File(label="Images or .zip", file_count="multiple", file_types=["image", ".zip"],
                              elem_id="upload-images")
        k["add_images"] = gr.Button("Add images", elem_id="btn-add-images")
    k["message"] = gr.Markdown(elem_id="coco-message")
    gr.Markdown("**Classes** of the project and how many annotations carry each (rejected ones included). "
                "Rename one (a typo), merge it into another (its annotations take that class; undo on an image "
                "takes its part back), or delete one nothing carries. A new class is made by labelling with a "
                "new name (it asks first).")
    with gr.Row():
        k["classes"] = gr.Dataframe(headers=["class", "annotations"], elem_id="class-table", interactive=False,
                                    scale=2)
        with gr.Column(scale=3):
            with gr.Row():
                k["class_pick"] = gr.Dropdown(label="Class", elem_id="class-manage-pick", allow_custom_value=True)
                k["class_to"] = gr.Textbox(label="New name, or the class to merge into", elem_id="class-manage-to")
            with gr.Row():
                k["class_rename"] = gr.Button("Rename", elem_id="btn-class-rename", size="sm")
                k["class_merge"] = gr.Button("Merge into", elem_id="btn-class-merge", size="sm")
                k["class_delete"] = gr.Button("Delete (unused)", elem_id="btn-class-delete", size="sm", variant="stop")
    return k


def wire_coco_tab(w: Wiring, k: dict[str, Any]) -> None:
    """Events of the COCO tab."""
    project = w.project

    def do_import(st: SessionState, path: str | None) -> str:
        if not path:
            raise StudioError("choose a COCO JSON file first")
        return "imported: " + project.import_coco(Path(path))

    def do_export(only_reviewed: bool) -> tuple[Any, str]:
        repaired: list[str] = []
        try:
            out = project.export_coco(bool(only_reviewed), repaired)
        except _expected_errors() as e:
            gr.Warning(str(e))
            return None, f"⚠ {e}"
        undecided = project.undecided_images()
        note = (f" · ⚠ {len(undecided)} exported images still have undecided proposals, which are not in "
                "the file: review them before using it as ground truth" if undecided and not only_reviewed else "")
        if repaired:
            note += f" · {len(repaired)} values written as null:\n\n" + "\n".join(f"- {line}" for line in repaired)
        return str(out), f"exported to `{out}`{note}"

    def add_images(st: SessionState, files: list[str] | None, progress: gr.Progress = gr.Progress()) -> list[Any]:
        def step(done: int, total: int, name: str) -> None:
            progress((done, total), desc=f"adding {name}")
        message = friendly(lambda _: project.add_uploads([Path(f) for f in files or []], step).summary())(st)
        st.asking = ""
        return [*w.studio.refresh(st, message), message]   # shown where the person uploaded, whole

    def classes() -> tuple[list[list[Any]], Any]:
        usage = project.class_usage()
        return [[name, count] for _, name, count in usage], gr.update(choices=[name for _, name, _ in usage])

    def manage(change: Callable[[str, str], str]) -> Callable[..., list[Any]]:
        def handler(st: SessionState, name: str | None, other: str | None) -> list[Any]:
            message = friendly(lambda _: change(name or "", other or ""))(st)
            st.asking = ""
            return [*w.studio.refresh(st, message), message, *classes()]
        return handler

    managed = [k["message"], k["classes"], k["class_pick"]]
    for button, change, api in (("class_rename", project.rename_class, "rename_class"),
                                ("class_merge", project.merge_class, "merge_class"),
                                ("class_delete", lambda name, _: project.delete_class(name), "delete_class")):
        w.on(k[button].click, manage(change), [w.state, k["class_pick"], k["class_to"]], w.outputs + managed,
             api_name=api)
    w.c["tab_coco"].select(classes, None, [k["classes"], k["class_pick"]], api_visibility="private")

    importer = w.act(do_import)

    def import_file(st: SessionState, path: str | None) -> list[Any]:
        values = importer(st, path)
        return [*values, values[OUTPUT_NAMES.index("status")]]   # the report where the file was given, whole

    imported = w.on(k["import"].click, import_file, [w.state, k["file"]], w.outputs + [k["message"]],
                    api_name="import_coco")
    w.refresh_gallery(imported)
    imported.then(lambda: gr.update(choices=project.class_names()), None, w.c["class_picker"],
                  api_visibility="private")   # an import may bring new classes
    w.refresh_gallery(w.on(k["add_images"].click, add_images, [w.state, k["images"]], w.outputs + [k["message"]],
                           api_name="add_images"))
    k["export"].click(do_export, [k["only_reviewed"]], [k["download"], k["message"]], api_name="export_coco")


# ------------------------------------------------------------------------------------ serving

def launch_kwargs() -> dict[str, Any]:
    """Look-and-feel arguments of ``Blocks.launch`` (Gradio 6 takes them there). No footer: its
    one line of links made the page 35 px taller than a 1440x900 window, so the page scrolled
    under the canvas (the API stays at ``/gradio_api/info`` for ``gradio_client``)."""
    keys = KEYS_JS.replace("__SHORTCUTS__", json.dumps(correct_view.SHORTCUTS, ensure_ascii=False))
    return {"css": CSS, "js": keys, "theme": gr.themes.Soft(), "footer_links": []}


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
        if config.coco is not None:
            print("launch.py: nothing was imported; fix the file (or the --images folder) and run the same "
                  "command again, it imports then", file=sys.stderr)
        return 2
    start(project, host=config.host, port=config.port, auth=config.auth, block=True)
    return 0
