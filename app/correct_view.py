"""Correct: accept, reject, relabel, delete, store drawn masks, undo/redo, mark reviewed.

Each action is one store edit, saved at once, made with the revision the session last saw (a
concurrent change by someone else is reported, not overwritten). Functions return the message to
show; they raise ``StudioError`` for things the person must fix (nothing selected, empty mask).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from app.canvas import MaskEdit
from app.inspect_view import STATE_MARKS, mask_iou
from app.project import Instance, Project, StudioError
from app.session import SessionState

SHORTCUTS = [
    ("A", "accept the selected instance"), ("R", "reject it"), ("Delete", "delete it"),
    ("L", "relabel it with the chosen class"), ("Shift+A", "accept every shown proposal"),
    ("Ctrl+Z / Ctrl+Y", "undo / redo"), ("M", "mark the image reviewed"),
    ("N / P", "next / previous image"),
    ("B / E", "brush / toggle the eraser (they edit the selected mask; a new object: the new-mask tool)"),
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


def labelled_class(project: Project, state: SessionState, class_name: str, action: str) -> int | str | None:
    """The class an action labels with (:meth:`Project.label_class`); a new name asks once first:
    None (``state.asking`` is "class") until the person said yes to that name."""
    category, new = project.label_class(class_name)
    if new and (state.class_ok or "").casefold() != str(category).casefold():
        state.asking, state.new_class, state.class_for = "class", str(category), action
        return None
    return category


def class_question(state: SessionState) -> str:
    """The status line while the "class" question is open."""
    return f"{state.new_class!r} is not a class of this project: make it a new class, or cancel?"


def relabel(project: Project, state: SessionState, class_name: str, revision: int | None) -> str:
    """Give the selected instance another class; its state stays (a proposal stays undecided,
    and becomes the person's, so Predict again keeps it). A class name the project does not have
    asks first (``state.asking == "class"``); once confirmed, the relabel makes the class and its
    undo removes it again."""
    inst = _selected(project, state)
    category = labelled_class(project, state, class_name, "relabel")
    if category is None:
        return class_question(state)
    project.edit(state.image_id, revision,
                 lambda rev: project.store.set_category(inst.id, category, expected_revision=rev))
    state.class_ok = None
    project_names = project.class_names_by_id()
    name = project_names[project.store.annotation(inst.id).category_id]
    made = f" (new class {name!r})" if isinstance(category, str) else ""
    kept = f" · still {inst.state}" if inst.state != "accepted" else ""
    return f"#{inst.id}: {inst.class_name} → {name}{made}{kept}"


def make_class(project: Project, state: SessionState, revision: int | None) -> str:
    """The answer "yes" to the "class" question: the relabel that asked runs with the new class;
    a drawn mask that asked is kept in the browser, to apply again."""
    if not state.new_class:
        return "no class to make"
    state.asking, state.class_ok = "", state.new_class
    if state.class_for == "relabel":
        return relabel(project, state, state.new_class, revision)
    return f"press Enter (Apply) again to store the drawn mask as the new class {state.new_class!r}"


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
        return add_drawn(project, state, edit, class_name, revision)
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


def add_drawn(project: Project, state: SessionState, edit: MaskEdit, class_name: str,
              revision: int | None) -> str:
    """A drawn new mask (new-mask tool or polygon) as a new instance of ``class_name`` (a new
    name asks first), unless it near-duplicates an accepted object (same pixels at mask IoU ≥
    the session's near-duplicate setting): that object is selected instead and nothing is
    added (the browser keeps the strokes, to discard). A mask lying inside an accepted object
    asks once (an Apply again adds it: an object inside another is possible, a copy is not)."""
    entry = project.image(state.image_id)
    mask = edit.apply(np.zeros((entry.height, entry.width), bool))
    if not mask.any():
        raise StudioError("the new mask is empty: draw something first")
    twin = decided_twin(project, state, mask)
    if twin is not None:
        state.selected = twin.id
        raise StudioError(f"the new mask is a near-duplicate of #{twin.id} {twin.class_name} (accepted): "
                          f"selected it instead of adding a copy; Esc discards the new mask")
    outer = container(project, state, mask)
    if outer is not None and state.inside_ok != outer.id:
        state.inside_ok = outer.id
        raise StudioError(f"the new mask lies inside #{outer.id} {outer.class_name} (accepted): Enter again adds "
                          f"it as another object, Esc discards it (to change #{outer.id}, select it and brush)")
    category = labelled_class(project, state, class_name, "add")
    if category is None:
        raise StudioError(class_question(state) + " (the drawn mask is kept)")
    ann_id = project.add_instance(state.image_id, mask, category, revision)
    state.selected, state.class_ok = ann_id, None
    name = project.class_names_by_id()[project.store.annotation(ann_id).category_id]
    how = " from a polygon" if edit.how == "polygon" else ""
    made = f" (new class {name!r})" if isinstance(category, str) else ""
    return f"added #{ann_id} {name}{how} ({int(mask.sum())} px){made}"


INSIDE = 0.9   # a new mask with this share of its pixels in an accepted object lies inside it


def container(project: Project, state: SessionState, mask: np.ndarray) -> Instance | None:
    """The accepted instance of the session's image holding at least ``INSIDE`` of ``mask``'s
    pixels (the one holding most), or None."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    box = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]     # only there can they share pixels
    area, crop = len(ys), mask[box]
    held = [(int((crop & i.mask[box]).sum()), i) for i in project.instances(state.image_id) if i.state == "accepted"]
    best = max(held, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] >= INSIDE * area else None


def decided_twin(project: Project, state: SessionState, mask: np.ndarray) -> Instance | None:
    """The accepted instance of the session's image that ``mask`` near-duplicates (mask IoU ≥
    ``state.dup_iou``, any class), the closest one; None when there is none."""
    ys, xs = np.nonzero(mask)
    probe = Instance(id=-1, mask=mask, category_id=-1, class_name="", score=None, source="human",
                     state="proposed", bbox=(int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1),
                     area=int(mask.sum()))
    scored = [(mask_iou(probe, i), i) for i in project.instances(state.image_id) if i.state == "accepted"]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= state.dup_iou else None


# ------------------------------------------------------------------------------ placed query

def query_click(project: Project, state: SessionState, x: int, y: int) -> str:
    """Place a query at image pixel ``(x, y)``: the model's mask and class there become a
    proposal (selected, to accept, relabel or edit); a click inside an undecided placed proposal
    places it again. A click inside an accepted object selects that object instead (the model
    would propose a copy of it; an object inside it is drawn with the polygon or new-mask tool),
    and so does a query whose mask near-duplicates one (nothing is stored then). The hook a
    client-side canvas calls with the image pixel it got."""
    if state.image_id is None:
        raise StudioError("open an image first")
    x, y = int(x), int(y)
    inside = [i for i in project.instances(state.image_id, state.revision) if i.state == "accepted"
              and 0 <= y < i.mask.shape[0] and 0 <= x < i.mask.shape[1] and i.mask[y, x]]
    if inside:
        state.selected = inside[0].id
        return (f"({x}, {y}) is inside #{inside[0].id} {inside[0].class_name} {STATE_MARKS['accepted']}: "
                f"selected it instead of placing a query (an object inside it: draw it with the polygon or "
                f"new-mask tool)")
    ann_id, message = project.place_query(state.image_id, x, y, state.revision,
                                          twin=lambda mask: decided_twin(project, state, mask))
    state.selected = ann_id
    return message


def shortcut_help() -> str:
    """Markdown list of the keyboard shortcuts."""
    return " · ".join(f"**{key}** {what}" for key, what in SHORTCUTS)
