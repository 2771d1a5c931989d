"""Schema upgrades: an older database opens in this version with its data intact."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pycocotools import mask as coco_mask
from sqlalchemy import text

from annotations import SchemaVersionError, Store
from annotations.database import alembic_config, head_revision, make_engine, migrate, table_names
from annotations.schema import Base

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

CORE_TABLES = ["alembic_version", "annotations", "categories", "datasets", "edits", "images"]


def _version(url: str) -> str:
    engine = make_engine(url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return version


def _fill_first_revision(url: str, counts: str) -> None:
    """Write a dataset the way version 0001 of the schema stores it, with plain SQL.

    The database is fresh, so the generated ids are all 1.
    """
    engine = make_engine(url)
    migrate(engine, "0001")
    assert table_names(engine) == CORE_TABLES
    now = "2025-01-01 00:00:00"
    statements = [
        ("INSERT INTO datasets (name, image_root, next_image_id, next_category_id, "
         "next_annotation_id, created_at) VALUES ('old', '/data', 8, 4, 51, :now)"),
        ("INSERT INTO categories (dataset_id, coco_id, name) VALUES (1, 3, 'bird')"),
        ("INSERT INTO images (dataset_id, coco_id, file_name, rel_path, width, height, "
         "review_state, revision) VALUES (1, 7, 'b.png', 'b.png', 6, 4, 'reviewed', 2)"),
        ("INSERT INTO annotations (dataset_id, image_id, coco_id, category_id, rle_counts, "
         "area, bbox_x, bbox_y, bbox_w, bbox_h, iscrowd, source, state, created_at) VALUES "
         "(1, 1, 50, 3, :counts, 6, 1, 1, 3, 2, false, 'human', 'accepted', :now)"),
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"now": now, "counts": counts})
    engine.dispose()


def test_database_at_first_revision_opens_with_data_preserved(store_url: str, tmp_path: Path):
    mask = np.zeros((4, 6), bool)
    mask[1:3, 1:4] = True
    counts = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    _fill_first_revision(store_url, counts)
    assert _version(store_url) == "0001"

    with Store(store_url) as store:
        assert _version(store_url) == head_revision() == "0005"
        [dataset] = store.list_datasets()
        assert (dataset.name, dataset.num_images, dataset.num_annotations) == ("old", 1, 1)
        [image] = store.list_images(dataset.id)
        assert (image.coco_id, image.review_state, image.revision) == (7, "reviewed", 2)
        [ann] = store.annotations(image.id)
        assert np.array_equal(ann.mask, mask) and ann.category_id == 3
        new = store.add_annotation(image.id, ~mask, 3, expected_revision=2)
        assert store.annotation(new).coco_id == 51  # the old counter is honoured
        store.record_model_version("tiny-v1", metrics={"AP": 1.0})  # table added by 0002
        store.set_active_model_version(dataset.id, "tiny-v1")       # column added by 0003
        assert store.active_model_version(dataset.id).name == "tiny-v1"
        exported = store.export_coco(dataset.id, tmp_path / "old.json")
        assert '"id":50' in exported.read_text()


def test_heldout_images_become_test_images(store_url: str, tmp_path: Path):
    """0005: an image held out under the two-way split (never trained on) becomes a test image;
    training images stay; the new check takes train/val/test and refuses "heldout"; downgrading
    gives the two-way split back."""
    engine = make_engine(store_url)
    migrate(engine, "0004")
    now = "2025-01-01 00:00:00"
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO datasets (name, image_root, next_image_id, next_category_id, "
                                "next_annotation_id, created_at) VALUES ('old', '/data', 4, 1, 1, :now)"), {"now": now})
        for k, side in ((1, "train"), (2, "heldout"), (3, "train")):
            connection.execute(text("INSERT INTO images (dataset_id, coco_id, file_name, rel_path, width, height, "
                                    "review_state, revision) VALUES (1, :k, :f, :f, 6, 4, 'reviewed', 1)"),
                               {"k": k, "f": f"{k}.png"})
            connection.execute(text("INSERT INTO image_splits (image_id, split, assigned_at) VALUES (:k, :s, :now)"),
                               {"k": k, "s": side, "now": now})
    migrate(engine, "0005")
    with Store(store_url) as store:
        assert store.image_splits(1) == {1: "train", 2: "test", 3: "train"}
    with pytest.raises(Exception, match="(?i)check"):
        with engine.begin() as connection:
            connection.execute(text("UPDATE image_splits SET split = 'heldout' WHERE image_id = 1"))
    with engine.begin() as connection:
        connection.execute(text("UPDATE image_splits SET split = 'val' WHERE image_id = 3"))
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT image_id, split FROM image_splits")).all())
    assert rows == {1: "train", 2: "heldout", 3: "heldout"}
    engine.dispose()


def test_migrations_create_exactly_the_models_schema(store: Store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_database_from_a_newer_version_is_refused(store_url: str):
    Store(store_url).close()
    engine = make_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer version"):
        Store(store_url)


def test_two_stores_opening_a_fresh_database_at_once(store_url: str):
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(store_url).close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _version(store_url) == head_revision()


def test_plain_postgresql_url_uses_psycopg(postgres_server):
    url = postgres_server.create_database().replace("postgresql+psycopg://", "postgresql://")
    with Store(url) as store:
        assert store.engine.dialect.driver == "psycopg"
        assert store.list_datasets() == []
