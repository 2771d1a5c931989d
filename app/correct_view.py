"""Correct: accept, reject, relabel, delete, store drawn masks, undo/redo, mark reviewed.

Each action is one store edit, saved at once, made with the revision the session last saw (a
concurrent change by someone else is reported, not overwritten). Functions return the message to
show; they raise ``StudioError`` for things the person must fix (nothing selected, empty mask).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from app.canvas import MaskEdit
from app.project import Instance, Project, StudioError
from app.session import SessionState

SHORTCUTS = [
    ("A", "accept the selected instance"), ("R", "reject it"), ("Delete", "delete it"),
    ("L", "relabel it with the chosen class"), ("Shift+A", "accept every shown proposal"),
    ("Ctrl+Z / Ctrl+Y", "undo / redo"), ("M", "mark the image reviewed"),
    ("N / P", "next / previous image"),
    ("B / E", "brush / toggle the eraser (they edit the selected mask; nothing selected: a new one)"),
    ("[ / ]", "Correct: smaller / larger brush; Explain: the previous / next layer shown large"),
    ("Enter / Esc", "apply / discard the strokes (or close / drop the polygon being clicked out)"),
    ("Ctrl+Z while drawing", "take the last stroke back (after Apply: undo the stored edit)"),
    ("K", "keep the selected near-duplicate, reject the others"),
    ("F", "fit the image"), ("wheel / drag", "zoom / pan the image (while drawing: right-drag pans)"),
    ("click again", "select the instance below"), ("?", "show / hide this list"),
]


def _selected(project: Project, state: SessionState) -> Instance:
    """The session's selected instance on its current image, or StudioError."""
    if state.image_id is None or state.selected is None:
        raise StudioError("select an instance first (click its mask or pick it in the list)")
    for inst in project.instances(state.image_id):
        if inst.id == state.selected:
            return inst
    state.selected = None
    raise StudioError("the selected instance no longer exists (it was deleted or undone)")


def set_state(project: Project, state: SessionState, new_state: str, revision: int | None) -> str:
    """Accept or reject the selected instance."""
    inst = _selected(project, state)
    project.edit(state.image_id, revision,
                 lambda rev: project.store.set_state(inst.id, new_state, expected_revision=rev))
    return f"#{inst.id} {inst.class_name}: {new_state}"


def accept_shown(project: Project, state: SessionState, shown: Sequence[Instance],
                 revision: int | None) -> str:
    """Accept every proposal currently shown (at or above the confidence threshold): one edit,
    so one undo takes it back."""
    todo = [i for i in shown if i.state == "proposed"]
    if not todo:
        return "no proposals shown to accept"
    summary = f"accept {len(todo)} shown proposals (" + ", ".join(f"#{i.id}" for i in todo) + ")"
    project.edit(state.image_id, revision, lambda rev: project.store.set_states(
        state.image_id, {i.id: "accepted" for i in todo}, rev, summary=summary))
    return summary


def delete(project: Project, state: SessionState, revision: int | None) -> str:
    """Delete the selected instance (undo brings it back)."""
    inst = _selected(project, state)
    project.edit(state.image_id, revision,
                 lambda rev: project.store.delete_annotation(inst.id, expected_revision=rev))
    state.selected = None
    return f"deleted #{inst.id} {inst.class_name}"


def relabel(project: Project, state: SessionState, class_name: str, revision: int | None) -> str:
    """Give the selected instance another class (a proposal becomes an accepted human label); a
    class name the project does not have yet makes a new class."""
    inst = _selected(project, state)
    _, cid, created = project.edit_with_label(
        state.image_id, revision, class_name,
        lambda category, rev: project.store.set_category(inst.id, category, expected_revision=rev))
    name = project.class_names_by_id()[cid]
    return f"#{inst.id}: {inst.class_name} → {name}" + (f" (new class {name!r})" if created else "")


def undo(project: Project, state: SessionState, revision: int | None, redo: bool = False) -> str:
    """Undo (or redo) the image's last edit — one user action, whoever made it — and say which.
    A prediction run is not undone: a stray Ctrl+Z right after opening an image would otherwise
    wipe its proposals, and the image would look as if it held no object."""
    if state.image_id is None:
        raise StudioError("open an image first")
    last = None if redo else project.store.last_applied_edit(state.image_id)
    if last is not None and last.action == "replace_predictions":
        return ("nothing to undo: the model's proposals are not an edit of yours "
                "(reject what is wrong, or Predict again)")
    step = project.store.redo if redo else project.store.undo
    done = project.edit(state.image_id, revision, lambda rev: step(state.image_id, expected_revision=rev))
    word = "redo" if redo else "undo"
    return f"{word}: {done.summary}" if done is not None else f"nothing to {word}"


def reopen(project: Project, state: SessionState, revision: int | None) -> str:
    """Take the image back to "in progress" (it can then be edited and predicted again)."""
    if state.image_id is None:
        raise StudioError("open an image first")
    project.edit(state.image_id, revision,
                 lambda rev: project.store.set_review_state(state.image_id, "in_progress", expected_revision=rev))
    return "image reopened (in progress)"


# ------------------------------------------------------------------------------ drawn masks
# (drawn on the annotation canvas in the browser, see app/canvas.py; sent as a MaskEdit)

def apply_edit(project: Project, state: SessionState, edit: MaskEdit, class_name: str,
               revision: int | None) -> str:
    """Store a drawn edit: ``edit.target``'s mask with the edit's box replaced, or (no target) a
    new instance of ``class_name``: one store edit, one undo step. Refused when the edit was drawn
    on another image than the session's (the page was behind), names an instance that no longer
    exists, changes nothing or leaves an empty mask (the browser then keeps the strokes: a
    successful edit is the only thing that moves the revision)."""
    if state.image_id is None:
        raise StudioError("open an image first")
    if edit.image_id is not None and edit.image_id != state.image_id:
        raise StudioError("the edit was drawn on another image than the one open now: nothing was changed")
    if edit.target is None:
        entry = project.image(state.image_id)
        mask = edit.apply(np.zeros((entry.height, entry.width), bool))
        ann_id = project.add_instance(state.image_id, mask, class_name, revision)
        state.selected = ann_id
        how = " from a polygon" if edit.how == "polygon" else ""
        return f"added #{ann_id} {class_name}{how} ({int(mask.sum())} px)"
    inst = next((i for i in project.instances(state.image_id) if i.id == edit.target), None)
    if inst is None:
        raise StudioError(f"#{edit.target} no longer exists (it was deleted or undone): nothing was changed")
    mask = edit.apply(inst.mask)
    if not mask.any():
        raise StudioError(f"the edit would leave #{inst.id} empty: use Delete to remove it")
    changed = int((mask ^ inst.mask).sum())
    if not changed:
        raise StudioError(f"the strokes change nothing in #{inst.id} (Esc discards them)")
    state.selected = inst.id
    project.edit(state.image_id, revision,
                 lambda rev: project.store.update_mask(inst.id, mask, expected_revision=rev))
    return f"#{inst.id}: mask saved ({changed} pixels changed)"


# ------------------------------------------------------------------------------ placed query

def query_click(project: Project, state: SessionState, x: int, y: int) -> str:
    """Place a query at image pixel ``(x, y)``: the model's mask and class there become a
    proposal (selected, to accept, relabel or edit); a click inside an undecided placed proposal
    places it again. The hook a client-side canvas calls with the image pixel it got."""
    if state.image_id is None:
        raise StudioError("open an image first")
    ann_id, message = project.place_query(state.image_id, int(x), int(y), state.revision)
    state.selected = ann_id
    return message


def shortcut_help() -> str:
    """Markdown list of the keyboard shortcuts."""
    return " · ".join(f"**{key}** {what}" for key, what in SHORTCUTS)
