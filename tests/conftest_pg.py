"""Fixtures for the annotation-store tests: a throwaway PostgreSQL server and stores on both backends.

``postgres_server`` (session scope) runs ``initdb`` into a temporary folder and starts the server
with ``pg_ctl`` on a free loopback port, its unix socket inside the same folder, trust auth for the
loopback only. PostgreSQL refuses to run as root, so as root the commands run as the ``postgres``
OS user (``runuser``) and the folder is handed to that user. Without the server binaries the
PostgreSQL tests skip, except under CI (``CI`` set), where they fail: CI must exercise PostgreSQL.

``store_url`` is parametrised over ``sqlite`` and ``postgresql`` and gives each test an empty
database (a file in ``tmp_path`` or a fresh PostgreSQL database); ``store`` opens a
:class:`annotations.Store` on it.

Use from a test module with ``pytest_plugins = ["conftest_pg"]`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from annotations import Store

_counter = itertools.count()

# Stops the server if the test process dies without tearing down (killed, timed out): waits for
# the parent pid to go away, then runs the stop command and removes the folder.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, folder, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
subprocess.run(stop, capture_output=True)
shutil.rmtree(folder, ignore_errors=True)
"""


def find_pg_bindir() -> Path | None:
    """Folder with ``initdb``/``pg_ctl``: ``$PG_BINDIR``, Debian's newest, or ``PATH``."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, owned by the current or the postgres user."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="fastinst-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0
        self.user = "studio"
        self._as_postgres = os.geteuid() == 0
        self._watchdog: subprocess.Popen[bytes] | None = None
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command(*args), capture_output=True, text=True, timeout=120)

    def _stop_command(self) -> list[str]:
        return self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """initdb and start on a free port; retries with another port if it was taken."""
        done = self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
                         "-E", "UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        for _attempt in range(3):
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                       f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                             "-t", "60", "-o", options, "start")
            if done.returncode == 0:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.folder),
                     *self._stop_command()],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True,
                )
                return
        log = self.log.read_text() if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def stop(self) -> None:
        """Stop the server (and its watchdog) and delete its folder."""
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait(timeout=30)
        subprocess.run(self._stop_command(), capture_output=True, timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(_counter)}"
        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL server for the whole test session."""
    bindir = find_pg_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found; install 'postgresql'"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studio.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on an empty database (both backends)."""
    opened = Store(store_url, user="tester")
    try:
        yield opened
    finally:
        opened.close()


# ------------------------------------------------------------------------- shared test data


def db_snapshot(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: equal snapshots mean an unchanged database."""
    from sqlalchemy import MetaData, select

    metadata = MetaData()
    metadata.reflect(store.engine)
    with store.engine.connect() as connection:
        return {
            name: sorted((tuple(map(repr, row)) for row in connection.execute(select(table))))
            for name, table in metadata.tables.items()
        }


def write_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A small random RGB PNG of the given size."""
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path)


def _ring(height: int, width: int, cy: float, cx: float, r_out: float, r_in: float):
    import numpy as np

    yy, xx = np.mgrid[:height, :width]
    dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (dist2 <= r_out**2) & (dist2 > r_in**2)


def _compressed(mask) -> dict:
    import numpy as np
    from pycocotools import mask as coco_mask

    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def _uncompressed(mask) -> dict:
    """Column-major run lengths starting with a run of zeros (COCO's uncompressed RLE)."""
    import numpy as np

    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def coco_document() -> dict:
    """A COCO instances document exercising everything the importer must handle.

    Non-contiguous image, category and annotation ids; multi-part, border-touching and fractional
    polygons; compressed RLE with a hole and with many islands; uncompressed RLE, crowd and not;
    two images without annotations; an unused category; extra keys on every level.
    """
    import numpy as np

    noise = np.random.default_rng(7).random((50, 50)) < 0.35
    ring = _ring(48, 64, 30, 20, 12, 5)
    crowd = np.zeros((60, 80), bool)
    crowd[5:25, 40:78] = True
    holed = _ring(60, 80, 40, 20, 15, 6)
    return {
        "info": {"description": "round-trip test", "version": "1.0"},
        "licenses": [{"id": 1, "name": "CC-BY", "url": "http://example.org"}],
        "images": [
            {"id": 3, "file_name": "a/img3.png", "width": 64, "height": 48, "license": 1},
            {"id": 10, "file_name": "img10.png", "width": 80, "height": 60},
            {"id": 11, "file_name": "img11.png", "width": 50, "height": 50,
             "date_captured": "2024-05-01"},
            {"id": 42, "file_name": "empty42.png", "width": 40, "height": 30},
            {"id": 7, "file_name": "empty7.png", "width": 30, "height": 40},
        ],
        "categories": [
            {"id": 1, "name": "cat", "supercategory": "animal"},
            {"id": 5, "name": "dog", "supercategory": "animal"},
            {"id": 90, "name": "zebra"},
            {"id": 17, "name": "unused", "keypoints": []},
        ],
        "annotations": [
            {"id": 100, "image_id": 3, "category_id": 1, "iscrowd": 0, "area": 1.0,
             "bbox": [0, 0, 1, 1],
             "segmentation": [[2, 2, 20, 2, 20, 15, 2, 15], [30, 20, 50, 20, 40, 40]]},
            {"id": 101, "image_id": 3, "category_id": 5, "iscrowd": 0,
             "segmentation": [[50, 0, 64, 0, 64, 48, 55, 48]], "attributes": {"occluded": True}},
            {"id": 102, "image_id": 3, "category_id": 90, "iscrowd": 0,
             "segmentation": _compressed(ring)},
            {"id": 205, "image_id": 10, "category_id": 5, "iscrowd": 1,
             "segmentation": _uncompressed(crowd)},
            {"id": 206, "image_id": 10, "category_id": 1, "iscrowd": 0,
             "segmentation": _uncompressed(holed)},
            {"id": 207, "image_id": 10, "category_id": 90, "iscrowd": 0,
             "segmentation": [[10.5, 3.25, 30.75, 8.5, 22.0, 29.9, 5.1, 20.0]]},
            {"id": 300, "image_id": 11, "category_id": 1, "iscrowd": 0,
             "segmentation": _compressed(noise)},
            {"id": 301, "image_id": 11, "category_id": 5, "iscrowd": 0,
             "segmentation": [[0, 0, 25, 0, 25, 25, 0, 25], [20, 20, 49, 30, 30, 49]]},
        ],
    }


def write_coco(folder: Path, document: dict | None = None, name: str = "instances.json") -> Path:
    """Write ``document`` (default :func:`coco_document`) and PNGs for its images under ``folder``.

    Images go to ``folder/images``; returns the JSON path.
    """
    import json

    document = coco_document() if document is None else document
    for seed, image in enumerate(document.get("images", [])):
        path = folder / "images" / image["file_name"]
        if not path.exists():
            write_png(path, image["width"], image["height"], seed)
    json_path = folder / name
    json_path.write_text(json.dumps(document))
    return json_path


@pytest.fixture
def make_coco_document():
    """Factory: a fresh copy of the COCO document of :func:`coco_document`."""
    return coco_document


@pytest.fixture
def write_coco_files():
    """Factory ``(folder, document=None, name=...) -> json path`` (see :func:`write_coco`)."""
    return write_coco


@pytest.fixture
def snapshot_db():
    """Factory ``(store) -> every row of every table`` (see :func:`db_snapshot`)."""
    return db_snapshot


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    """The default COCO document written under ``tmp_path`` with its images."""
    return write_coco(tmp_path)
