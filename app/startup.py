"""Opening a project from a StudioConfig: the model, the store, the dataset and its images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from app import demo
from app.config import ConfigError, StudioConfig
from app.project import Project, add_folder_images, file_version, find_moved_dataset, find_or_create_dataset
from app.session import ModelSlot

Log = Callable[[str], None]


def load_model(weights: Path, preset: str | None, device: str, model: str | None = None) -> ModelSlot:
    """Our checkpoint (.safetensors, carries its model, preset and classes) or a released one
    (.pth/.pkl: FastInst's needs ``preset``; COCO's 80 classes) -> the process's ModelSlot.

    Raises:
        ConfigError: ``model`` is given and the file holds another model (the message names both),
            or a released FastInst file comes without its preset.
    """
    from engines.load import display_name, load_predictor
    from fastinst.errors import CheckpointError
    try:
        loaded = load_predictor(weights, model=model, preset=preset, device=device)
    except CheckpointError as e:
        raise ConfigError(f"--weights {weights.name}: {e}") from None
    description = f"{display_name(loaded.model)} {weights.name} ({loaded.preset}) on {loaded.predictor.device}"
    return ModelSlot(loaded.predictor, file_version(weights), description, weights=weights, preset=loaded.preset,
                     model=loaded.model)


def same_model(weights: Path, model: str | None) -> bool:
    """True when ``model`` is None or ``weights`` (readable) holds that model."""
    from engines.load import weights_model
    from fastinst.errors import CheckpointError
    if model is None:
        return True
    try:
        return weights_model(weights) == model
    except CheckpointError:
        return False


def dataset_name(config: StudioConfig) -> str:
    """Store dataset name: "demo", or derived from the COCO file / image folder."""
    if config.is_demo:
        return "demo"
    if config.coco is not None:
        return f"{config.coco.stem} ({config.coco.resolve().parent.name})"
    return config.images.resolve().name


def open_project(config: StudioConfig, log: Log = print) -> Project:
    """Open (or create) the project described by ``config``: the dataset made from ``--coco``, or
    without one the dataset over the ``--images`` folder holding the most work (a new one if none).
    ``--coco`` is imported whole into a new project and merged again when the file has changed
    (:func:`import_coco_file`); new files in an ``--images`` folder are added."""
    from annotations import Store
    config.project_dir.mkdir(parents=True, exist_ok=True)
    if config.is_demo:
        images, _, regenerated = demo.demo_dataset(config.project_dir, log)
        if regenerated:
            retire_demo_store(config, log)
        weights = config.weights or demo.demo_weights()
    else:
        images = config.images or config.coco.resolve().parent
        weights = config.weights or demo.demo_weights()
        if config.weights is None:
            log("no --weights given: predicting with the demo shapes model")
    store = Store(config.db_url)
    moved = None if config.is_demo else find_moved_dataset(store, images)
    if moved is not None:   # its folder is gone and its images are here: the folder was moved
        store.move_dataset(moved.id, images)
        log(f"project {moved.name!r} was over {moved.image_root}, which is gone; its images are in {images}: "
            f"it opens there")
        missing = [e.file_name for e in store.list_images(moved.id) if not (images / e.file_name).is_file()]
        if missing:
            log(f"{len(missing)} of its images are not in {images} (they did not come along): "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        dataset_id, created, others = moved.id, False, []
    elif (made := project_made_from(config, store)) is not None:   # this --coco file's project, wherever it moved
        dataset_id, created, others = made, False, []
    else:
        dataset_id, created, others = find_or_create_dataset(store, dataset_name(config), images,
                                                             by_folder=config.coco is None and not config.is_demo)
    if not created:
        record = store.dataset(dataset_id)
        log(f"opening project {record.name!r} ({record.num_annotations} annotations)")
    if others:
        log(f"other projects over {images}: {', '.join(repr(n) for n in others)} (--coco FILE opens the one made "
            f"from FILE)")
    active = store.active_model_version(dataset_id)
    if (config.weights is None and active is not None and active.path and Path(active.path).is_file()
            and same_model(Path(active.path), config.model)):
        weights = Path(active.path)      # the version this project last switched to
    log(f"loading model {weights} ...")
    slot = load_model(weights, config.preset, config.device, config.model)
    if config.coco is not None:
        import_coco_file(store, dataset_id, config, images, first=created or not store.list_images(dataset_id),
                         log=log)
    if config.coco is None or config.images is not None:
        # --images is the folder to annotate: its images the COCO file does not list come too
        added, skipped = add_folder_images(store, dataset_id, images)
        if added:
            log(f"added {added} images from {images}" + ("" if config.coco is None else
                f" that {config.coco.name} does not list"))
        for message in skipped:
            log(f"skipped unreadable image {message}")
    if slot.version not in {m.name for m in store.list_model_versions()}:
        store.record_model_version(slot.version, str(weights))
    if config.compare is not None:   # loaded on first use, by the side-by-side view
        other = file_version(config.compare)
        if other not in {m.name for m in store.list_model_versions()}:
            store.record_model_version(other, str(config.compare.resolve()))
    store.set_active_model_version(dataset_id, slot.version)
    return Project(store, dataset_id, slot, cache_size=config.cache_size, work_dir=config.project_dir)


def project_made_from(config: StudioConfig, store: Any) -> int | None:
    """The dataset an earlier launch imported this ``--coco`` file (this path) into, if it still
    exists (``coco-imports.json`` in the project folder): its name comes from the file's folder,
    which a moved folder changes."""
    record_path = config.project_dir / "coco-imports.json"
    if config.coco is None or not record_path.is_file():
        return None
    suffix = f":{config.coco.resolve()}"
    ids = {d.id for d in store.list_datasets()}
    for key in json.loads(record_path.read_text()):
        if key.endswith(suffix) and int(key.split(":", 1)[0]) in ids:
            return int(key.split(":", 1)[0])
    return None


def import_coco_file(store: Any, dataset_id: int, config: StudioConfig, images: Path, *, first: bool,
                     log: Log) -> None:
    """Import ``--coco``: all of it into a new (or still empty) project; into a project made from
    it before, only when the file changed since (a re-export from another tool), merged as the
    studio's upload merges (:func:`annotations.coco_import.import_coco` with ``match_by_name``:
    what the project ever held is not imported again, so a person's corrections stay; reviewed
    images that get annotations go back to in progress). The file's SHA-256 per project is kept in
    ``coco-imports.json`` in the project folder."""
    from annotations.coco_parse import file_sha256

    record_path = config.project_dir / "coco-imports.json"
    records = json.loads(record_path.read_text()) if record_path.is_file() else {}
    key = f"{dataset_id}:{config.coco.resolve()}"
    digest = file_sha256(config.coco)
    if not first and records.get(key) == digest:
        return
    before = [k.split(":", 1)[1] for k, v in records.items() if k.startswith(f"{dataset_id}:") and v == digest]
    if not first and before:   # the same file, moved or renamed with its folder: nothing to merge
        log(f"{config.coco} is the file imported before as {before[0]}: nothing new to import")
        records[key] = digest
        record_path.write_text(json.dumps(records, indent=1))
        return
    if first:
        log(f"importing {config.coco} ...")
        report = store.import_coco(dataset_id, config.coco, images, strict=config.strict)
    else:
        from annotations import CocoFormatError

        log(f"{config.coco} changed since it was imported: adding what is new in it ...")
        try:
            report = store.import_coco(dataset_id, config.coco, images, strict=config.strict, match_by_name=True)
        except CocoFormatError as e:   # the project opens as it was; the file is read again next time
            log(f"{e}; nothing from it was imported, the project is as it was")
            return
    lines = report.lines()
    if not first and report.annotations_added == 0 and report.images_added == 0 and not report.merged:
        lines = [f"{config.coco.name}: nothing new (every annotation in it is, or was, in the project)"]
    for line in lines:
        log(line)
    records[key] = digest
    record_path.write_text(json.dumps(records, indent=1))


def retire_demo_store(config: StudioConfig, log: Log) -> None:
    """The demo images were (re)generated: set aside the demo's own SQLite store, whose
    annotations belong to the previous images (kept as ``studio.db.old-N``, never deleted)."""
    db = config.project_dir / "studio.db"
    if config.db is not None or not db.is_file():
        return
    n = 1
    while db.with_name(f"studio.db.old-{n}").exists():
        n += 1
    for suffix in ("", "-wal", "-shm"):
        part = db.with_name(db.name + suffix)
        if part.exists():
            part.rename(db.with_name(f"studio.db.old-{n}{suffix}"))
    log(f"the demo images changed: their previous annotations are kept in {db.name}.old-{n}")
