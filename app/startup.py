"""Opening a project from a StudioConfig: the model, the store, the dataset and its images."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from app import demo
from app.config import ConfigError, StudioConfig
from app.project import Project, add_folder_images, file_version, find_or_create_dataset
from app.session import ModelSlot

Log = Callable[[str], None]
OFFICIAL_SUFFIXES = {".pth", ".pkl"}


def load_model(weights: Path, preset: str | None, device: str) -> ModelSlot:
    """Our checkpoint (.safetensors, carries its preset and classes) or an official detectron2
    checkpoint (.pth/.pkl, needs ``preset``; COCO's 80 classes) -> the process's ModelSlot."""
    from fastinst import Predictor, build_model
    if weights.suffix.lower() in OFFICIAL_SUFFIXES:
        from fastinst.cli import coco_class_names
        from fastinst.official import load_official
        if not preset:
            raise ConfigError(f"--weights {weights.name} is an official checkpoint: give its --preset")
        model = build_model(preset)
        load_official(model, weights)
        predictor = Predictor(model, coco_class_names(), device=device)
    else:
        from fastinst.checkpoint import read_info
        preset = read_info(weights).preset
        predictor = Predictor.from_checkpoint(weights, device=device)
    description = f"{weights.name} ({preset}) on {predictor.device}"
    return ModelSlot(predictor, file_version(weights), description, weights=weights, preset=preset)


def dataset_name(config: StudioConfig) -> str:
    """Store dataset name: "demo", or derived from the COCO file / image folder."""
    if config.is_demo:
        return "demo"
    if config.coco is not None:
        return f"{config.coco.stem} ({config.coco.resolve().parent.name})"
    return config.images.resolve().name


def open_project(config: StudioConfig, log: Log = print) -> Project:
    """Open (or create) the project described by ``config``; imports happen once, when the
    dataset is first created, except that new files in an ``--images`` folder are added."""
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
    dataset_id, created = find_or_create_dataset(store, dataset_name(config), images)
    active = store.active_model_version(dataset_id)
    if config.weights is None and active is not None and active.path and Path(active.path).is_file():
        weights = Path(active.path)      # the version this project last switched to
    log(f"loading model {weights} ...")
    slot = load_model(weights, config.preset, config.device)
    if config.coco is not None and (created or not store.list_images(dataset_id)):
        # also after an earlier failed import left the dataset empty: never serve it silently
        log(f"importing {config.coco} ...")
        for line in store.import_coco(dataset_id, config.coco, images, strict=config.strict).lines():
            log(line)
    if config.coco is None:
        added, skipped = add_folder_images(store, dataset_id, images)
        if added:
            log(f"added {added} images from {images}")
        for message in skipped:
            log(f"skipped unreadable image {message}")
    if slot.version not in {m.name for m in store.list_model_versions()}:
        store.record_model_version(slot.version, str(weights))
    store.set_active_model_version(dataset_id, slot.version)
    return Project(store, dataset_id, slot, cache_size=config.cache_size, work_dir=config.project_dir)


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
