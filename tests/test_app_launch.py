"""``python launch.py`` as a person runs it: a real process serving HTTP, options honoured, unsafe
combinations refused, login enforced when asked for."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from test_app_support import free_port, model_weights

ROOT = Path(__file__).resolve().parents[1]


def run_launch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def stop(proc: subprocess.Popen) -> str:
    """Stop a launched studio as Ctrl+C does (killed after 30 s); returns everything it printed."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> str:
    """The page body once the server answers (fails early if the process dies)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"launch.py exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            time.sleep(1)
    raise AssertionError("the studio did not start in time")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.synthetic import make_shapes_dataset
    folder = tmp_path_factory.mktemp("launch")
    make_shapes_dataset(folder / "shapes", 2, 3, size=(96, 128))
    (folder / "shapes" / "images" / "broken.png").write_bytes(b"not an image")
    return folder


def test_exposing_beyond_loopback_needs_a_login() -> None:
    result = run_launch("--host", "0.0.0.0")
    assert result.returncode == 2 and "--auth" in result.stderr
    result = run_launch("--images", "/nonexistent/folder")
    assert result.returncode == 2 and "not a folder" in result.stderr


def test_launch_serves_an_image_folder_behind_a_login(dataset: Path) -> None:
    port = free_port()
    env = {**os.environ, "FASTINST_STUDIO_AUTH": "alice:s3cret"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--images", str(dataset / "shapes" / "images"),
         "--weights", str(model_weights(dataset)), "--port", str(port), "--device", "cpu",
         "--data-dir", str(dataset / "studio-data")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, proc)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "config", timeout=10)
        assert refused.value.code == 401, "the app's configuration is served without a login"
        with pytest.raises(Exception):
            Client(url, verbose=False).predict(1, api_name="/open_image")
        client = Client(url, auth=("alice", "s3cret"), verbose=False)
        result = client.predict(1, api_name="/open_image")
        assert "000000.png" in result[1]
        assert (dataset / "studio-data" / "project" / "studio.db").is_file()
    finally:
        output = stop(proc)
    assert "added 2 images" in output
    assert "skipped unreadable image broken.png" in output


def test_failed_coco_import_is_reported_and_retried_on_the_next_launch(dataset: Path, tmp_path: Path) -> None:
    """A --coco whose images are all missing stops launch.py with the fix; once the file is right,
    the same command imports it (the empty dataset left behind is never served silently)."""
    from app.config import StudioConfig
    from app.startup import open_project
    coco = dataset / "shapes" / "annotations.json"
    broken = tmp_path / "photos.json"
    document = json.loads(coco.read_text())
    broken.write_text(json.dumps({**document, "images": [{**i, "file_name": "gone/" + i["file_name"]}
                                                         for i in document["images"]]}))
    args = ("--images", str(dataset / "shapes" / "images"), "--coco", str(broken), "--weights",
            str(model_weights(dataset)), "--device", "cpu", "--data-dir", str(tmp_path / "data"))
    result = run_launch(*args, timeout=180)
    assert result.returncode == 2, result.stderr
    assert "photos.json: none of its" in result.stderr and "image not found" in result.stderr
    assert "run the same command again" in result.stderr
    broken.write_text(coco.read_text())
    config = StudioConfig(images=dataset / "shapes" / "images", coco=broken, weights=model_weights(dataset),
                          device="cpu", data_dir=tmp_path / "data")
    log: list[str] = []
    project = open_project(config, log=log.append)
    assert len(project.images()) == len(document["images"]) and any(line.startswith("imported") for line in log)


def test_images_the_coco_file_does_not_list_are_added_and_said(dataset: Path, tmp_path: Path) -> None:
    import shutil
    from app.config import StudioConfig
    from app.startup import open_project
    folder = tmp_path / "images"
    shutil.copytree(dataset / "shapes" / "images", folder)
    document = json.loads((dataset / "shapes" / "annotations.json").read_text())
    unlisted = document["images"].pop()
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] != unlisted["id"]]
    (tmp_path / "part.json").write_text(json.dumps(document))
    config = StudioConfig(images=folder, coco=tmp_path / "part.json", weights=model_weights(dataset),
                          device="cpu", data_dir=tmp_path / "data")
    log: list[str] = []
    project = open_project(config, log=log.append)
    names = {e.file_name for e in project.images()}
    assert unlisted["file_name"] in names and len(names) == len(document["images"]) + 1
    assert f"added 1 images from {folder} that part.json does not list" in log


def test_launching_again_keeps_the_work_and_takes_what_is_new_in_the_coco_file(dataset: Path, tmp_path: Path) -> None:
    """Launch with ``--coco``, correct a mask; launch the same command again after the file gained
    an annotation (a re-export from another tool): it is added, the correction stays, nothing comes
    twice. Launch again unchanged: nothing is read again. Launch without ``--coco`` on the same
    folder: the same project opens (it opened an empty new one)."""
    import shutil

    from app.config import StudioConfig
    from app.startup import open_project

    folder = tmp_path / "images"
    shutil.copytree(dataset / "shapes" / "images", folder)
    (folder / "broken.png").unlink()
    coco = tmp_path / "labels.json"
    document = json.loads((dataset / "shapes" / "annotations.json").read_text())
    coco.write_text(json.dumps(document))

    def launch(with_coco: bool = True) -> tuple[object, list[str]]:
        log: list[str] = []
        config = StudioConfig(images=folder, coco=coco if with_coco else None, weights=model_weights(dataset),
                              device="cpu", data_dir=tmp_path / "data")
        project = open_project(config, log=log.append)
        return project, log

    project, _ = launch()
    total = sum(e.num_annotations for e in project.images())
    first = project.images()[0]
    corrected = project.store.annotations(first.id)[0]
    grown = corrected.mask.copy()
    grown[:3, :3] = True
    project.store.update_mask(corrected.id, grown)
    project.store.set_review_state(first.id, "reviewed", undecided="reject")

    new = {"id": 9001, "image_id": document["images"][1]["id"], "category_id": document["categories"][0]["id"],
           "iscrowd": 0, "segmentation": [[5, 5, 40, 5, 40, 40, 5, 40]]}
    coco.write_text(json.dumps({**document, "annotations": [*document["annotations"], new]}))
    project, log = launch()
    assert any("changed since it was imported" in line for line in log), log
    assert sum(e.num_annotations for e in project.images()) == total + 1
    assert project.store.annotation(corrected.id).rle_counts != corrected.rle_counts   # the correction stays
    assert project.image(first.id).review_state == "reviewed"                          # nothing new on it

    project, log = launch()
    assert not any("import" in line or "changed" in line for line in log), log          # unchanged: not read
    project, log = launch(with_coco=False)
    assert project.dataset_id == project.store.list_datasets()[0].id and len(project.store.list_datasets()) == 1
    assert sum(e.num_annotations for e in project.images()) == total + 1
    assert any(line.startswith("opening project 'labels (") for line in log), log


def test_two_projects_over_one_folder_keep_their_own_work_and_exports(dataset: Path, tmp_path: Path) -> None:
    """Project A (from labels.json) holds a reviewed image; project B (from other.json, same
    folder) only the model's proposals, more of them. Launching on the folder without ``--coco``
    opens A (the person's work), and each project's export is its own file."""
    import shutil

    from app.config import StudioConfig
    from app.startup import open_project

    folder = tmp_path / "images"
    shutil.copytree(dataset / "shapes" / "images", folder)
    (folder / "broken.png").unlink()
    document = json.loads((dataset / "shapes" / "annotations.json").read_text())
    (tmp_path / "labels.json").write_text(json.dumps({**document, "annotations": document["annotations"][:1]}))
    (tmp_path / "other.json").write_text(json.dumps({**document, "annotations": []}))

    def launch(coco: str | None) -> object:
        config = StudioConfig(images=folder, coco=None if coco is None else tmp_path / coco,
                              weights=model_weights(dataset), device="cpu", data_dir=tmp_path / "data")
        return open_project(config, log=lambda line: None)

    a = launch("labels.json")
    reviewed = a.images()[0]
    a.store.set_review_state(reviewed.id, "reviewed", undecided="reject")
    b = launch("other.json")
    for entry in b.images():
        b.predict(entry.id)
    assert b.store.dataset(b.dataset_id).num_annotations > a.store.dataset(a.dataset_id).num_annotations

    again = launch(None)
    assert again.dataset_id == a.dataset_id
    paths = {a.export_coco(), b.export_coco()}
    assert len(paths) == 2
    files = {len(json.loads(p.read_text())["images"]) for p in paths}
    assert files == {0, 1}          # A's export holds its reviewed image, B's none


@pytest.mark.parametrize("with_coco", [True, False])
def test_a_moved_image_folder_opens_its_project(dataset: Path, tmp_path: Path, with_coco: bool) -> None:
    """The folder (with its COCO file) moved or renamed, launched on the new path: the project
    holding the reviewed work opens there and says so, instead of a new empty project."""
    import shutil

    from app.config import StudioConfig
    from app.startup import open_project

    first = tmp_path / "first"
    shutil.copytree(dataset / "shapes" / "images", first / "images")
    (first / "images" / "broken.png").unlink()
    (first / "labels.json").write_text((dataset / "shapes" / "annotations.json").read_text())

    def launch(folder: Path) -> tuple[object, list[str]]:
        log: list[str] = []
        config = StudioConfig(images=folder / "images", coco=folder / "labels.json" if with_coco else None,
                              weights=model_weights(dataset), device="cpu", data_dir=tmp_path / "data")
        return open_project(config, log=log.append), log

    project, _ = launch(first)
    reviewed = project.images()[0]
    project.store.set_review_state(reviewed.id, "reviewed", undecided="reject")
    moved = tmp_path / "photos"
    shutil.move(first, moved)
    left_behind = project.images()[-1]
    (moved / "images" / left_behind.file_name).unlink()          # one file did not come along
    again, log = launch(moved)
    assert again.dataset_id == project.dataset_id, log
    assert any("which is gone; its images are in" in line for line in log), log
    assert any("1 of its images are not in" in line and left_behind.file_name in line for line in log), log
    if with_coco:   # the same file in its new place: not "changed", nothing merged
        assert not any("changed since it was imported" in line for line in log), log
        assert any("is the file imported before as" in line and "nothing new" in line for line in log), log
    third, log = launch(moved)                                  # the same command again: the same project
    assert third.dataset_id == project.dataset_id and not any("which is gone" in line for line in log), log
    assert again.image(reviewed.id).review_state == "reviewed"
    assert len(again.store.list_datasets()) == 1
    assert again.pixels(reviewed.id).shape[:2] == (reviewed.height, reviewed.width)   # read from the new place
