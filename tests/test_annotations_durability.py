"""Crashes and torn writes: committed work survives a killed process; exports are atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from annotations import Store
from annotations.atomic import atomic_write_json

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

REPO = Path(__file__).resolve().parents[1]


def _child(script: str) -> subprocess.Popen[str]:
    """Run ``script`` in a fresh Python process that imports the package from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _integrity_ok(url: str) -> bool:
    with Store(url) as store, store.engine.connect() as connection:
        return connection.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"


def test_committed_edit_survives_a_killed_process(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    with Store(url) as store:
        dataset = store.create_dataset("d", tmp_path)
        store.add_category(dataset, "thing", 1)
        image = store.add_image(dataset, "a.png", 8, 8)
    child = _child(f"""
        import os, signal, sys
        import numpy as np
        from annotations import Store
        store = Store({url!r})
        mask = np.zeros((8, 8), bool); mask[2:5, 2:5] = True
        print(store.add_annotation({image}, mask, 1), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    ann_id = int(out.strip())
    assert _integrity_ok(url)
    with Store(url) as store:
        assert store.annotation(ann_id).area == 9
        assert store.image(image).revision == 1


def test_import_killed_midway_leaves_all_or_nothing(tmp_path: Path, write_coco_files):
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(200)]
    annotations = [
        {"id": i, "image_id": i // 10, "category_id": 1,
         "segmentation": [[i % 50, 1, 60, 2, 30, 63, 5, 40]]}
        for i in range(2000)
    ]
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": 1, "name": "thing"}]}
    json_path = write_coco_files(tmp_path, document, "big.json")
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    with Store(url) as store:
        dataset = store.create_dataset("d", tmp_path / "images")
    child = _child(f"""
        from annotations import Store
        store = Store({url!r})
        print("start", flush=True)
        store.import_coco({dataset}, {str(json_path)!r}, check_files=False)
        print("done", flush=True)
    """)
    assert child.stdout.readline().strip() == "start"
    time.sleep(0.4)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert _integrity_ok(url)
    with Store(url) as store:
        [record] = store.list_datasets()
        assert (record.num_images, record.num_annotations) in {(0, 0), (200, 2000)}


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "export.json"
    atomic_write_json(target, {"version": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"images": list(range(10000)), "bad": object()})
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]
    atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 2}
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_export_to_a_new_folder_and_over_an_old_export(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'studio.db'}") as store:
        dataset = store.create_dataset("d", tmp_path)
        store.add_category(dataset, "thing", 1)
        image = store.add_image(dataset, "a.png", 4, 4)
        store.add_annotation(image, np.eye(4, dtype=bool), 1)
        out = tmp_path / "deep" / "er" / "coco.json"
        out.parent.mkdir(parents=True)
        out.write_text("old and about to be replaced")
        assert store.export_coco(dataset, out) == out
        assert len(json.loads(out.read_text())["annotations"]) == 1
        assert [p.name for p in out.parent.iterdir()] == ["coco.json"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_full_sync(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'new' / 'folder' / 'studio.db'}") as store:
        with store.engine.connect() as connection:
            pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                       for name in ("journal_mode", "foreign_keys", "synchronous")}
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 2}  # 2 = FULL
        dataset = store.create_dataset("d", tmp_path)
        with pytest.raises(Exception, match="FOREIGN KEY"):
            with store.engine.begin() as connection:
                connection.execute(text(
                    "INSERT INTO images (dataset_id, coco_id, file_name, rel_path, width, height, "
                    "review_state, revision) VALUES (:d, 1, 'a', 'a', 1, 1, 'unreviewed', 0)"),
                    {"d": dataset + 100})


def test_in_memory_sqlite_store_works_in_one_thread():
    with Store("sqlite://") as store:
        dataset = store.create_dataset("m", "/tmp")
        store.add_category(dataset, "thing")
        image = store.add_image(dataset, "a.png", 4, 4)
        store.add_annotation(image, np.eye(4, dtype=bool), 1)
        assert store.undo(image) and store.annotations(image) == []
