"""The per-process logic behind the UI: what every event returns.

``Studio.refresh`` computes the header and the *visible* view for a session (other views are sent
empty and redrawn when their tab opens), so each event costs one render. Rendered pictures are
written as fast PNGs straight into Gradio's cache (lossless, and cheaper than Gradio's own PNG
encoder).
"""
from __future__ import annotations

import functools
import itertools
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import gradio as gr
import numpy as np

from app import canvas, explain_view, inspect_view
from annotations import ImageRecord
from app.project import Instance, Project, StudioError, ap_text, test_ap
from app.session import LRUCache, SessionState
from app.versions import VersionModels
from fastinst import visualize

MODEL_QUEUE = "model"          # concurrency group of every event that may run the network
KEEP = object()                # a view output that did not change: re-send what the session has

VIEW_OUTPUTS = {"inspect": ("inspect_image", "instance_table", "instance_info"),
                "explain": ("explain_heatmap", "explain_info", "explain_layers"),
                "correct": ("correct_image", "correct_table")}
VIEW_OUTPUT_NAMES = [name for names in VIEW_OUTPUTS.values() for name in names]
ASK_BOXES = ("undecided", "empty", "switch", "class")   # the questions the header can ask (see SessionState.asking)
OUTPUT_NAMES = ["state", "image_picker", "review_state", "instance_picker", "status", "project_info",
                "explain_help", "activation", *VIEW_OUTPUT_NAMES, "place", "model_picker", "ask_text", *(f"ask_{k}" for k in ASK_BOXES), "class_picker"]


def cache_folder() -> Path:
    """Where the studio writes the pictures it serves (inside Gradio's cache, so that Gradio
    serves them and cleans them up)."""
    folder = Path(gr.utils.get_upload_folder()) / "fastinst"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def png(image: np.ndarray, level: int = 1) -> str:
    """Write an RGB image as a lossless PNG inside Gradio's cache folder and return its path
    (Gradio serves it as is, without re-encoding). ``level`` is the zlib level: 0 stores (fastest,
    for a browser on this machine), 1 compresses quickly (for a remote browser)."""
    path = cache_folder() / f"{uuid.uuid4().hex}.png"
    ok, data = cv2.imencode(".png", np.ascontiguousarray(visualize.as_rgb(image)[:, :, ::-1]),
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


class Studio:
    """Per-process UI logic over one Project: computes the values every event returns."""

    def __init__(self, project: Project, png_level: int = 1) -> None:
        self.project = project
        self.png_level = png_level
        self.versions = VersionModels(project)           # any model version's predictions
        self.maps: LRUCache[np.ndarray] = LRUCache(64)   # activation maps and layer masks
        self._header = ""                                 # project line, rebuilt on "all" refreshes
        self.explain_help = ""                            # Explain's help for the model, rebuilt with it
        self.tokens = itertools.count(1)                  # unique parts of component tokens (Explain panels)
        self.thumbs: LRUCache[str] = LRUCache(4096)       # gallery thumbnail files by image id
        self.canvas_images: LRUCache[str] = LRUCache(256)  # image PNG files for the canvas, by image id
        self.canvas_masks: LRUCache[canvas.Masks] = LRUCache(256)  # mask files by (image id, revision)

    # ------------------------------------------------------------------ shared pieces

    def png(self, image: np.ndarray) -> str:
        """A rendered picture as a PNG file for an Image output."""
        return png(image, self.png_level)

    def shown(self, state: SessionState, revision: int | None = None) -> list[Instance]:
        """The instances visible with this session's filters (``revision``: the image's, if known)."""
        if state.image_id is None:
            return []
        return inspect_view.visible_instances(self.project.instances(state.image_id, revision),
                                              state.min_score, state.show_rejected, state.selected)

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
        return (f"**FastInst Studio** · *{name}* · {done} of {len(images)} images reviewed · "
                f"model `{self.project.model.version}` ({self.project.model.description})")

    def review_text(self, e: ImageRecord, instances: list[Instance]) -> str:
        """The image's file name, review state ("reviewed, no objects" when it holds none), revision,
        and a failed prediction."""
        state = e.review_state.replace("_", " ")
        if e.review_state == "reviewed" and not any(i.state == "accepted" for i in instances):
            state = "reviewed, no objects"
        failed = " · ⚠ **prediction failed**" if self.project.prediction_failure(e.id) else ""
        return f"`{e.file_name}` {e.width}×{e.height} · **{state}** · rev {e.revision}{failed}"

    def model_choices(self) -> list[tuple[str, str]]:
        """(label, version) of every recorded model version, with its test AP (interval, images,
        objects) when known, and "not shown better" for a version its run did not offer."""
        out = []
        for record in self.project.model_versions():
            ap = test_ap(record)
            label = f"{record.name} · {record.created_at:%Y-%m-%d %H:%M}"
            label += "" if ap is None else f" · test AP {ap_text(ap)}"
            if (record.metrics or {}).get("better") is False:
                label += " · not shown better than its parent"
            out.append((label, record.name))
        return out

    def switch_warning(self, version: str) -> str | None:
        """Why switching to ``version`` deserves a second thought, or None: its run did not show it
        better than its parent, or its test AP is lower than the current model's (each measured
        on its own run's test images)."""
        records = {r.name: r for r in self.project.model_versions()}
        current = self.project.model.version
        target = records.get(version)
        metrics = (target.metrics or {}) if target is not None else {}
        if metrics.get("better") is False:
            return f"`{version}` was not shown better than `{target.parent}`: {metrics.get('verdict', '')}."
        new, old = test_ap(target), test_ap(records.get(current))
        if new is not None and old is not None and new.value is not None and old.value is not None \
                and new.value < old.value:
            return (f"`{version}` has a lower held-out AP than `{current}`: {ap_text(new)} against {ap_text(old)} "
                    f"(each as recorded with its version).")
        return None

    def ask_values(self, state: SessionState) -> dict[str, Any]:
        """The question box: its text and which answer row is visible."""
        values: dict[str, Any] = {f"ask_{k}": gr.update(visible=state.asking == k) for k in ASK_BOXES}
        values["ask_text"] = self._question(state) if state.asking else ""
        return values

    def _question(self, state: SessionState) -> str:
        if state.asking == "undecided":
            shown = [i for i in self.project.instances(state.image_id) if i.state == "proposed"]
            above = sum((i.score if i.score is not None else 1.0) >= state.min_score for i in shown)
            return (f"**{len(shown)} proposals are undecided.** Accept the {above} at confidence ≥ "
                    f"{state.min_score:.2f} (reject the rest), reject them all, or cancel?")
        if state.asking == "empty":
            return "**No accepted objects on this image.** Mark it *reviewed, no objects*?"
        if state.asking == "class":
            what = "relabel the selected instance with it" if state.class_for == "relabel" else "label the drawn mask with it"
            return (f"**`{state.new_class}` is not a class of this project.** Make it a new class and {what} "
                    f"(undo takes both back), or cancel (a typo: choose a class in the picker)?")
        return f"**{self.switch_warning(state.switch_to or '')}** Switch anyway?"

    # ---------------------------------------------------------------------- renders

    def canvas_image(self, image_id: int) -> str:
        """The image's PNG file for the canvas, written once per image."""
        image_path = self.canvas_images.get(image_id)
        if image_path is None or not Path(image_path).is_file():
            image_path = self.png(self.project.pixels(image_id))
            self.canvas_images.put(image_id, image_path)
        return image_path

    def canvas_masks_of(self, image_id: int, revision: int) -> tuple[canvas.Masks, list[Instance]]:
        """The masks file of an image revision for the canvas (written once per revision) and
        every instance of it, top first."""
        everything = inspect_view.visible_instances(self.project.instances(image_id, revision), 0.0, True)
        masks = self.canvas_masks.get((image_id, revision))
        if masks is None or not Path(masks.path).is_file():
            masks = canvas.write_masks(everything, cache_folder() / f"{uuid.uuid4().hex}.json")
            self.canvas_masks.put((image_id, revision), masks)
        return masks, everything

    def canvas_value(self, state: SessionState, mode: str) -> str:
        """The annotation canvas's value for the session's image (see ``app.canvas``): the image
        and mask files are written once per image and per revision."""
        image_id, revision = state.image_id, state.revision
        entry = self.project.image(image_id)
        image_path = self.canvas_image(image_id)
        masks, everything = self.canvas_masks_of(image_id, revision)
        return canvas.value(token=f"{image_id}:{revision}", image_path=image_path,
                            size=(entry.height, entry.width), masks=masks, instances=everything,
                            selected=state.selected, min_score=state.min_score,
                            show_rejected=state.show_rejected, mode=mode, seq=state.canvas_seq,
                            acted=state.presses, moved=state.moves, refused=state.edit_refused)

    def ahead(self, image_id: int) -> canvas.Ahead:
        """An image's files for the page to load ahead (its masks only when it is predicted
        already); writes only cache files. Raises StudioError (and the like) when unreadable."""
        entry = self.project.image(image_id)
        image_path = self.canvas_image(image_id)
        if self.project.needs_prediction(image_id):
            return canvas.Ahead(f"{image_id}:{entry.revision}", entry.file_name, (entry.height, entry.width),
                                image_path, None, [])
        masks, everything = self.canvas_masks_of(image_id, entry.revision)
        return canvas.Ahead(f"{image_id}:{entry.revision}", entry.file_name, (entry.height, entry.width),
                            image_path, masks, everything)

    def prefetch(self, state: SessionState) -> str:
        """What the page may load ahead (``canvas.prefetch_value``): the next and the previous
        image ("" without an image). The session and the store are not changed."""
        if state.image_id is None:
            return ""
        around = {}
        for step in (1, -1):
            other = self.project.neighbour(state.image_id, step)
            if other is None or other == state.image_id:
                around[step] = None
                continue
            try:
                around[step] = self.ahead(other)
            except _expected_errors():
                around[step] = None
        return canvas.prefetch_value(state.image_id, around[1], around[-1])

    def render_inspect(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Inspect's outputs: the canvas, the table (unchanged by a selection) and the details."""
        return {"inspect_image": self.canvas_value(state, "inspect"),
                "instance_table": KEEP if parts == "select" else inspect_view.instance_rows(shown, state.dup_iou),
                "instance_info": inspect_view.describe(inst)}

    def explain_maps(self, state: SessionState, inst: Instance | None) -> tuple[Any, Any, Any]:
        """(Explanation, activation map or None for a model without one, layer masks or None) for
        the session's image, cached per model version so that moving between instances, heads and
        maps re-renders only."""
        version, image_id = self.project.model.version, state.image_id
        pred = self.project.prediction(image_id)
        exp = pred.explanation
        heat = None
        if explain_view.has_activation(exp):
            heat = self.maps.get_or_create(("act", version, image_id, state.activation),
                                           lambda: explain_view.activation_map(exp, state.activation, pred.class_names))
        masks = None
        if inst is not None and inst.query is not None and inst.model_version == version:
            masks = self.maps.get_or_create(("layers", version, image_id, inst.query),
                                            lambda: exp.layer_masks(inst.query))
        return exp, heat, masks

    def render_explain(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Explain's outputs; ``parts`` "activation" redraws only the heatmap; the rest is kept.
        The overview is FastInst's IA heatmap or QueryInst's proposal and stage boxes, whichever the
        model's explanation holds. The per-layer panels are drawn once per (image, model, instance):
        the browser switches between them."""
        small = self.project.pixels(state.image_id)
        k = visualize.display_factor(*small.shape[:2])
        image = visualize.enlarge(small, k)
        exp, heat_map, masks = self.explain_maps(state, inst)
        names = self.project.prediction(state.image_id).class_names
        out = dict.fromkeys(VIEW_OUTPUTS["explain"], KEEP)
        queries = explain_view.model_queries(shown, self.project.model.version)
        emphasis = inst if masks is not None else None
        if heat_map is None:
            overview = explain_view.render_proposals(image, exp, queries, emphasis, k)
        else:
            points = (np.asarray(exp.query_points, np.float32) + 0.5) * k - 0.5
            overview = explain_view.render_heatmap(image, heat_map, points, queries, emphasis)
        out["explain_heatmap"] = self.png(overview)
        if parts == "activation":
            return out
        out["explain_info"] = explain_view.describe_query(exp, inst, names, masks)
        layers_key = (state.image_id, self.project.model.version, inst.id if inst else None)
        if masks is not None and state.layers_for == layers_key and state.sent.get("explain_layers"):
            return out   # the same query's panels are on the page: they stay
        state.layers_for = layers_key
        if masks is None:
            out["explain_layers"] = explain_view.empty_layers(stages=heat_map is None)
            return out
        panels, added, removed, _, scale = visualize.layer_panels(small, masks, exp.layer_boxes(inst.query))
        urls = [canvas.file_url(self.png(p)) for p in panels]
        out["explain_layers"] = explain_view.layers_value(
            f"{state.image_id}-{self.project.model.version}-{inst.id}-{next(self.tokens)}", urls,
            exp.layer_titles(), explain_view.layer_notes(masks), added, removed, scale,
            "stage" if heat_map is None else "head")
        return out

    def render_correct(self, state: SessionState, shown: list[Instance], inst: Instance | None,
                       parts: str) -> dict[str, Any]:
        """Correct's outputs: the canvas (its tools draw in the browser) and the instance list
        beside it (unchanged by a selection)."""
        return {"correct_image": self.canvas_value(state, "correct"),
                "correct_table": KEEP if parts == "select" else inspect_view.instance_rows(shown, state.dup_iou)}

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

    def explain_controls(self, state: SessionState, full: bool) -> dict[str, Any]:
        """Explain's help and heatmap choice for the project's model: the model can have been
        switched (by this or another session) since the page was built, and a reload builds the
        page for the launch model. Set on every full refresh; otherwise the choice is re-sent as is."""
        if not full:
            return {"explain_help": self.explain_help, "activation": state.activation}
        activation = self.project.model.model == "fastinst"    # the model with an IA map
        self.explain_help = explain_view.help_text(activation)
        return {"explain_help": self.explain_help, "activation": gr.update(visible=activation, value=state.activation)}

    def refresh(self, state: SessionState, message: str = "", parts: str = "all") -> list[Any]:
        """Values for OUTPUT_NAMES. ``parts``: "all" after anything that may change the image list
        or review state; "filter", "select" or "activation" after events that change only
        what is drawn (the image list is then re-sent as is); "none" when no picture changes.

        Outputs of hidden tabs are sent empty (their tab redraws them when opened) and unchanged
        visible ones are re-sent from ``state.sent``: both are cheap for Gradio, unlike
        ``gr.skip()``, which makes it rebuild the component's configuration."""
        values: dict[str, Any] = dict.fromkeys(OUTPUT_NAMES)
        values.update(state=state, status=message, class_picker=gr.skip())
        full = parts == "all" or not self._header
        if full:
            self._header = self.header_info()
        values["project_info"] = self._header
        values.update(self.explain_controls(state, full))
        if state.image_id is None:     # a new session, or a race with another event: open the first
            first = self.project.neighbour(None, 0)
            if first is not None:
                state.select_image(first)
        if state.image_id is None:
            values["image_picker"] = self.choices_update(state, "image_picker", self.image_choices, None, True)
            values["review_state"] = "no image"
            values["model_picker"] = self.choices_update(state, "model_picker", self.model_choices,
                                                         self.project.model.version, True)
            values.update(self.ask_values(state), place=state.place())
            return [values[name] for name in OUTPUT_NAMES]
        entry = self.project.image(state.image_id)
        state.revision = entry.revision
        shown = self.shown(state, entry.revision)
        inst = self.selected(state, shown)
        for name, value in self.render_view(state, shown, inst, parts).items():
            values[name] = state.sent.get(name) if value is KEEP else value
        state.sent = {name: values[name] for name in VIEW_OUTPUT_NAMES}
        values["image_picker"] = self.choices_update(state, "image_picker", self.image_choices, state.image_id, full)
        values["review_state"] = self.review_text(entry, self.project.instances(entry.id, entry.revision))
        failure = self.project.prediction_failure(entry.id)
        if failure and not message:
            values["status"] = f"⚠ prediction failed on {entry.file_name}: {failure} (Predict again retries)"
        values["place"] = state.place()
        state.status = values["status"]
        values.update(self.ask_values(state))
        values["model_picker"] = self.choices_update(state, "model_picker", self.model_choices,
                                                     self.project.model.version, full)
        # new choices cost Gradio a configuration rebuild: only when the list can have changed
        choices = inspect_view.instance_choices(shown, state.dup_iou)
        same_list = parts in ("select", "activation") or choices == state.picker_choices
        state.picker_choices = choices
        if inst is not None:         # the Class picker follows the selection (L relabels from there)
            values["class_picker"] = self.choices_update(state, "class_picker", self.project.class_names,
                                                         inst.class_name, full)
        elif full:                   # a class made, merged or removed: the list follows, the typed name stays
            listed = self.project.class_names()
            if state.lists_sent.get("class_picker") != hash(tuple(listed)):
                state.lists_sent["class_picker"] = hash(tuple(listed))
                values["class_picker"] = gr.update(choices=listed)
        values["instance_picker"] = state.selected if same_list else gr.update(choices=choices,
                                                                               value=state.selected)
        return [values[name] for name in OUTPUT_NAMES]

    @staticmethod
    def choices_update(state: SessionState, name: str, choices: Callable[[], list[tuple[str, Any]]],
                       value: Any, full: bool) -> Any:
        """A picker's output: new choices only when they may have changed (``full``) and differ
        from those this session's page holds (each list costs the page a rebuild of the picker),
        else just the value."""
        if not full:
            return value
        listed = choices()
        digest = hash(tuple(listed))
        if state.lists_sent.get(name) == digest:
            return value
        state.lists_sent[name] = digest
        return gr.update(choices=listed, value=value)

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
        """Run the model on the session's image when it has not predicted it yet (or ``force``);
        a failure raises StudioError (shown as failed, never as an image without objects)."""
        if state.image_id is None:
            return ""
        if force and self.project.image(state.image_id).review_state == "reviewed":
            raise StudioError("this image is reviewed: press Reopen before predicting it again")
        outcome = self.project.predict(state.image_id, state.revision, force=force)
        return "" if outcome is None else outcome.message()

    def navigate(self, state: SessionState, target: Callable[[SessionState], int | None],
                 parts: str = "all", note: str = "") -> Iterator[list[Any]]:
        """Open an image and predict it if this model has not: the image is shown first (status
        "predicting ..."), then with its proposals. Runs in the one-at-a-time event queue, so rapid
        key presses are handled in order and every visited image is predicted once per version."""
        state.asking = ""
        message = friendly(lambda st: self.open_image(st, target(st)))(state)
        failed = message.startswith("⚠")
        message = f"{note} · {message}" if note else message
        if state.image_id is None or failed:
            yield self.refresh(state, message, parts)
            return
        if not self.project.needs_prediction(state.image_id):
            yield self.refresh(state, message, parts)
            return
        yield self.refresh(state, f"{message} · predicting with {self.project.model.version} ...", parts)
        done = friendly(self.predict)(state)
        yield self.refresh(state, f"{message} · {done}" if done else message)

    def mark_reviewed(self, state: SessionState, answer: str | None = None) -> str:
        """Mark the image reviewed. Undecided proposals make it ask first (``answer`` "accept":
        accept those at or above the session's threshold and reject the rest; "reject": reject
        them all); an image with no accepted object asks to be marked "reviewed, no objects"
        (``answer`` "empty")."""
        from annotations import UndecidedProposalsError
        if state.image_id is None:
            raise StudioError("open an image first")
        self.project.pixels(state.image_id)      # an image nobody could see is never reviewed
        instances = self.project.instances(state.image_id, state.revision)
        undecided = answer if answer in ("accept", "reject") else "refuse"
        will_accept = [i for i in instances if i.state == "accepted" or (
            i.state == "proposed" and undecided == "accept"
            and (i.score if i.score is not None else 1.0) >= state.min_score)]
        if undecided == "refuse" and not any(i.state == "proposed" for i in instances) and \
                not will_accept and answer != "empty":
            state.asking = "empty"
            return "no accepted objects: confirm 'reviewed, no objects' or cancel"
        try:
            decided = self.project.edit(state.image_id, state.revision, lambda rev: self.project.store.set_review_state(
                state.image_id, "reviewed", rev, undecided=undecided, min_score=state.min_score))
        except UndecidedProposalsError as e:
            state.asking = "undecided"
            return f"{len(e.proposal_ids)} undecided proposals: accept, reject or cancel"
        state.asking = ""
        n = sum(i.state == "accepted" for i in self.project.instances(state.image_id))
        what = f"{n} object{'s' if n != 1 else ''}" if n else "no objects"
        extra = (f" (accepted {decided['accepted']}, rejected {decided['rejected']} proposals)"
                 if decided["accepted"] or decided["rejected"] else "")
        return f"image marked reviewed, {what}{extra}"

    def switch_model(self, state: SessionState, version: str | None, confirmed: bool = False) -> str:
        """Make ``version`` the project's model (every session predicts with it at once). A
        version its run did not show better, or with a lower test AP than the current one, asks
        first (:meth:`switch_warning`)."""
        if not version or version == self.project.model.version:
            return f"already predicting with {self.project.model.version}"
        if version not in {r.name for r in self.project.model_versions()}:
            raise StudioError(f"no model version called {version!r}")
        warning = self.switch_warning(version)
        if not confirmed and warning:
            state.asking, state.switch_to = "switch", version
            return f"{warning} Switch anyway?"
        state.asking, state.switch_to = "", None
        self.project.switch_model(version)
        return f"switched to {version} (reviewed images keep their annotations)"

    def keep_one(self, state: SessionState) -> str:
        """Keep the selected instance (accept it) and reject its near-duplicate proposals (same class,
        mask IoU ≥ the session's setting), as one edit."""
        shown = self.shown(state)
        inst = self.selected(state, shown)
        if inst is None:
            raise StudioError("select one of the near-duplicates to keep")
        dups = inspect_view.duplicates_of(inst, shown, state.dup_iou)
        if not dups:
            raise StudioError(f"#{inst.id} has no near-duplicate at IoU ≥ {state.dup_iou:.2f}")
        states = {d.id: "rejected" for d in dups}
        if inst.state == "proposed":
            states[inst.id] = "accepted"
        summary = f"keep #{inst.id} {inst.class_name}, reject its near-duplicates " + ", ".join(f"#{d.id}" for d in dups)
        self.project.edit(state.image_id, state.revision, lambda rev: self.project.store.set_states(
            state.image_id, states, rev, summary=summary))
        return summary

    def pick(self, state: SessionState, click: canvas.Click) -> str:
        """Select what a canvas click picked: the browser's pick when it is one of the image's
        instances covering the clicked pixel, else the topmost shown instance there (or none)."""
        state.canvas_seq = max(state.canvas_seq, click.seq)
        everything = self.project.instances(state.image_id, state.revision) if state.image_id else []
        mine = next((i for i in everything if i.id == click.pick), None)
        inside = mine is not None and 0 <= click.y < mine.mask.shape[0] and 0 <= click.x < mine.mask.shape[1]
        if inside and mine.mask[click.y, click.x]:
            state.selected = mine.id
        else:
            state.selected = inspect_view.pick_instance(self.shown(state), click.x, click.y)
        return "" if state.selected is not None else "no instance there"
