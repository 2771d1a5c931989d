"""Opening a project from a StudioConfig: the model, the store, the dataset and its images."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from app import demo
from app.config import ConfigError, StudioConfig
from app.project import Project, add_folder_images, file_version, find_or_create_dataset
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
    if (config.weights is None and active is not None and active.path and Path(active.path).is_file()
            and same_model(Path(active.path), config.model)):
        weights = Path(active.path)      # the version this project last switched to
    log(f"loading model {weights} ...")
    slot = load_model(weights, config.preset, config.device, config.model)
    if config.coco is not None and (created or not store.list_images(dataset_id)):
        # also after an earlier failed import left the dataset empty: never serve it silently
        log(f"importing {config.coco} ...")
        for line in store.import_coco(dataset_id, config.coco, images, strict=config.strict).lines():
            log(line)
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
