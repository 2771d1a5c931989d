"""The studio's navigation pipeline without a browser: what one navigation event yields, a failed
prediction shown as failed (never as "no objects"), and the place a URL keeps."""
from __future__ import annotations

from pathlib import Path

import pytest

from annotations import CocoFormatError
from app.session import ModelSlot, SessionState
from app.studio import OUTPUT_NAMES, Studio
from test_app_support import make_project


class BrokenPredictor:
    """A predictor whose forward pass fails the way a GPU out of memory does (the real model
    cannot be made to fail on purpose here); everything else is the real one's."""

    def __init__(self, real) -> None:
        self.real = real
        self.class_names, self.device, self.model = real.class_names, real.device, real.model

    def predict(self, image, min_score=0.0):
        raise RuntimeError("CUDA out of memory (simulated)")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    return make_project(tmp_path_factory.mktemp("pipeline"), num_images=3, size=(120, 160))


def outputs(values: list) -> dict:
    return dict(zip(OUTPUT_NAMES, values))


def test_navigation_shows_the_image_then_its_proposals(project) -> None:
    studio, st = Studio(project), SessionState()
    target = project.images()[0]
    steps = [outputs(v) for v in studio.navigate(st, lambda s: target.id)]
    assert len(steps) == 2
    assert "predicting with" in steps[0]["status"] and target.file_name in steps[0]["review_state"]
    assert f"opened {target.file_name} · " in steps[1]["status"] and "proposals from" in steps[1]["status"]
    assert project.was_predicted(target.id)
    again = [outputs(v) for v in studio.navigate(st, lambda s: target.id)]
    assert len(again) == 1 and "proposals" not in again[0]["status"], "predicted once per version"


def test_failed_prediction_is_shown_as_failed_and_retried(project) -> None:
    studio, st = Studio(project), SessionState()
    target = project.images()[1]
    real = project.model.predictor
    broken = ModelSlot(BrokenPredictor(real), project.model.version, project.model.description,
                       weights=project.model.weights, preset=project.model.preset)
    working = ModelSlot(real, project.model.version, project.model.description,
                        weights=project.model.weights, preset=project.model.preset)
    project.model.swap(broken)
    try:
        last = outputs(list(studio.navigate(st, lambda s: target.id))[-1])
    finally:
        project.model.swap(working)
    assert "prediction failed" in last["status"] and "out of memory" in last["status"]
    assert "prediction failed" in last["review_state"]
    assert not project.was_predicted(target.id) and project.store.annotations(target.id) == []
    shown = outputs(studio.refresh(st))                 # any later event still says so
    assert "prediction failed" in shown["status"]
    retried = outputs(list(studio.navigate(st, lambda s: target.id))[-1])
    assert "proposals from" in retried["status"] and "failed" not in retried["review_state"]


def test_place_round_trips_through_the_url_query() -> None:
    from urllib.parse import parse_qsl
    st = SessionState(image_id=7, selected=31, min_score=0.3, tool="polygon", tab="correct",
                      show_rejected=True, dup_iou=0.8)
    back = SessionState()
    back.restore(dict(parse_qsl(st.place())), ("inspect", "correct"))
    assert (back.image_id, back.selected, back.min_score, back.tool, back.tab, back.show_rejected,
            back.dup_iou) == (7, 31, 0.3, "polygon", "correct", True, 0.8)
    junk = SessionState()
    junk.restore({"image": "x", "t": "7", "tab": "nowhere", "tool": "laser"}, ("inspect",))
    assert (junk.image_id, junk.min_score, junk.tab, junk.tool) == (None, 0.5, "inspect", "select")


def test_uploads_skip_duplicates_and_never_overwrite(project, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    root = project.store.dataset(project.dataset_id).image_root
    (root / "uploads").mkdir(exist_ok=True)
    keep = root / "uploads" / "a.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(keep)    # a file not in the project
    original = keep.read_bytes()
    new = tmp_path / "a.png"
    Image.fromarray(np.full((6, 7, 3), 9, np.uint8)).save(new)
    report = project.add_uploads([new, new])
    assert report.added == ["uploads/a-2.png"] and len(report.duplicates) == 1
    assert keep.read_bytes() == original
    entry = next(e for e in project.images() if e.file_name == "uploads/a-2.png")
    assert (entry.width, entry.height) == (7, 6)


def test_a_coco_file_finds_photos_added_as_a_zip_under_their_own_names(project, tmp_path: Path) -> None:
    """A camera's zip (two folders both holding IMG_0001.JPG, a name stored decomposed as macOS
    writes it) added in the browser, then the COCO file of those photos (names as the photos
    were named, composed as most tools write JSON): every image is found, nothing is added twice."""
    import io
    import json
    import unicodedata
    import zipfile

    import numpy as np
    from PIL import Image
    decomposed = unicodedata.normalize("NFD", "Café.png")
    names = ["day1/IMG_0001.JPG", "day2/IMG_0001.JPG", decomposed]
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for k, name in enumerate(names):
            buffer = io.BytesIO()
            Image.fromarray(np.full((30, 40, 3), 40 * k + 20, np.uint8)).save(
                buffer, format="PNG" if name.endswith("png") else "JPEG")
            z.writestr(name, buffer.getvalue())
    report = project.add_uploads([archive])
    assert report.added == ["uploads/day1/IMG_0001.JPG", "uploads/day2/IMG_0001.JPG", f"uploads/{decomposed}"]
    before = len(project.images())
    in_file = ["day1/IMG_0001.JPG", "day2/IMG_0001.JPG", "Café.png"]          # composed (NFC)
    coco = {"images": [{"id": k + 1, "file_name": n, "width": 40, "height": 30} for k, n in enumerate(in_file)],
            "categories": [{"id": 1, "name": project.class_names()[0]}],
            "annotations": [{"id": k + 1, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]]} for k in range(3)]}
    path = tmp_path / "photos.json"
    path.write_text(json.dumps(coco, ensure_ascii=False))
    lines = project.import_coco(path)
    assert len(project.images()) == before, lines
    for stored in report.added:
        entry = next(e for e in project.images() if e.file_name == stored)
        assert entry.num_annotations == 1, (stored, lines)
    assert "is this image (the same name in another Unicode normal form" in lines or "studio's upload" in lines


def test_a_coco_name_two_uploads_share_finds_neither(project, tmp_path: Path) -> None:
    """Two shoots from one camera, each uploaded on its own: the second IMG_0001.JPG is stored as
    IMG_0001-2.JPG. A COCO file naming IMG_0001.JPG could mean either, so it is not found (never
    the first shoot's picture), and the report says so."""
    import json

    import numpy as np
    from PIL import Image
    shots = []
    for k in range(2):
        path = tmp_path / f"shoot{k}" / "IMG_0001.JPG"
        path.parent.mkdir()
        Image.fromarray(np.full((30, 40, 3), 90 + 70 * k, np.uint8)).save(path, format="JPEG")
        report = project.add_uploads([path])
        assert report.added, report.summary()
        shots += report.added
    assert shots == ["uploads/IMG_0001.JPG", "uploads/IMG_0001-2.JPG"]
    coco = {"images": [{"id": 1, "file_name": "IMG_0001.JPG", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": project.class_names()[0]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]]}]}
    path = tmp_path / "shoot.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(CocoFormatError, match="image not found"):
        project.import_coco(path)
    assert all(e.num_annotations == 0 for e in project.images() if e.file_name in shots)


def test_a_restart_keeps_the_model_version_switched_to(tmp_path: Path) -> None:
    """Without --weights a restarted studio predicts with the version the project last chose."""
    import torch
    from app.config import StudioConfig
    from app.project import file_version
    from app.startup import open_project
    from fastinst import build_model, save_checkpoint
    from training.synthetic import make_shapes_dataset
    make_shapes_dataset(tmp_path / "shapes", 1, 3, size=(60, 80))
    config = StudioConfig(images=tmp_path / "shapes" / "images", data_dir=tmp_path / "studio-data",
                          device="cpu", cache_size=4)
    project = open_project(config, log=lambda message: None)
    started_with = project.model.version
    names = list(project.model.predictor.class_names)
    torch.manual_seed(0)
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, build_model("tiny", num_classes=len(names)), preset="tiny", class_names=names)
    project.store.record_model_version(file_version(other), str(other))
    project.switch_model(file_version(other))
    project.store.close()
    again = open_project(config, log=lambda message: None)                 # restarted
    assert again.model.version == file_version(other)
    again.switch_model(started_with)                                       # and back, by its recorded path
    assert again.model.version == started_with
    assert again.store.active_model_version(again.dataset_id).name == started_with
