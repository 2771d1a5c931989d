"""Prediction over a whole folder at scale: batched loading, resumable, sharded under ``torchrun``.

    python -m fastinst predict-folder photos/ --weights model.safetensors --out results.json
    torchrun --nproc_per_node=8 -m fastinst predict-folder photos/ --weights ... --out results.json
    python -m queryinst predict-folder photos/ --weights queryinst.safetensors --out results.json

Any model of the project's contract (:class:`engines.contract.Predictor`: ``prepare`` and
``predict_prepared``) runs here.

- Images (recursive, sorted by path relative to the root) are read, EXIF-rotated and resized (the
  predictor's ``prepare``) by a ``torch.utils.data.DataLoader`` with worker processes, ``batch_size`` at a time; each loaded batch
  is split into groups of one resized size, and each group is one forward pass (so a result does not
  depend on which other images shared its batch beyond float rounding).
- Under ``torchrun`` rank ``r`` of ``n`` takes files ``r, r+n, r+2n...`` (gloo on CPU, NCCL on GPU,
  one GPU per local rank); every rank appends its results, one JSON line per image, to
  ``<out>.parts/rank<r>.jsonl`` (flushed and fsynced per batch); after a barrier rank 0 merges the
  parts into ``out`` (atomically: a reader sees no partial file) in file order.
- Resuming: images already in any part file are skipped, whatever the world size was, so a
  crashed or stopped run continues where it stopped; images that failed are tried again (a file
  still being copied fails once), and so are files replaced since (size or modification time). The run's options (score threshold, class
  names, and what the caller names: the weights file, preset, backend) are kept in
  ``<out>.parts/run.json``; a resume with other options is refused, naming them, so one results
  file never mixes two settings. Image ids are given at the merge, from the folder as it is then
  (files added or removed between the runs do not shift any annotation onto another image).
  ``--overwrite`` starts again.
- An unreadable image, or one the model fails on, is recorded under ``errors`` (one line naming
  the file) and the run goes on.

The output is ``{"images": [{"id", "file_name", "height", "width"}], "categories": [{"id",
"name"}], "annotations": [COCO result dicts: image_id, category_id, segmentation (RLE), score, bbox,
area], "errors": [{"file_name", "error"}]}``; image ids are 1-based positions in the sorted file
list, category ids 1-based class indices.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from engines.contract import Predictor, same_size_groups

from .checkpoint import atomic_write
from .coco_results import to_coco_results
from .errors import FastInstError, ImageError
from .images import IMAGE_SUFFIXES
from .predictor import resolve_device



@dataclass(frozen=True)
class Shard:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Shard":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def list_images(root: str | Path) -> List[str]:
    """Image files under ``root`` (recursive), as sorted POSIX paths relative to it."""
    root = Path(root)
    if not root.is_dir():
        raise FastInstError(f"not a folder: {root}")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FolderImages(Dataset):
    """``(index, resized (3,h,w) uint8 tensor or None, original (H, W), error or None)`` per file;
    ``prepare`` is the predictor's (image path -> resized tensor and original size)."""

    def __init__(self, root: Path, files: Sequence[Tuple[int, str]],
                 prepare: Callable[[Path], Tuple[torch.Tensor, Tuple[int, int]]]) -> None:
        self.root, self.files, self.prepare = root, list(files), prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        index, name = self.files[i]
        try:
            tensor, original = self.prepare(self.root / name)
        except ImageError as exc:
            return index, None, (0, 0), str(exc)
        return index, tensor, original, None


def _collate(items):
    return items


def parts_dir(out: Path) -> Path:
    """The folder of the per-rank partial results of ``out``."""
    return out.with_name(out.name + ".parts")


def read_parts(out: Path, root: Optional[Path] = None) -> Dict[str, dict]:
    """Every image already done: file name -> its record. A result wins over an error and, with
    ``root``, a result of the file as it is now over one of a file since replaced; else the last
    one read. A torn last line is ignored."""
    done: Dict[str, dict] = {}

    def rank(record: dict) -> int:
        if "error" in record:
            return 0
        current = root is not None and (root / record["file_name"]).is_file() and \
            record.get("file") == _file_identity(root / record["file_name"])
        return 2 if current else 1

    folder = parts_dir(out)
    if not folder.is_dir():
        return done
    for part in sorted(folder.glob("rank*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash; that image is predicted again
            previous = done.get(record["file_name"])
            if previous is None or rank(record) >= rank(previous):
                done[record["file_name"]] = record
    return done


def predict_folder(predictor: Predictor, root: str | Path, out: str | Path, *, batch_size: int = 4,
                   num_workers: int = 2, score_threshold: float = 0.0, shard: Optional[Shard] = None,
                   overwrite: bool = False, progress: bool = True,
                   run_options: Optional[Dict[str, object]] = None) -> Optional[Path]:
    """Predict every image under ``root``; rank 0 writes the merged ``out`` and returns its path
    (other ranks return None). See the module docstring for sharding, resuming and the format.
    ``run_options``: JSON-able facts of the run beyond the threshold and class names (the CLI
    gives the weights file, preset, backend) that a resume must share.

    Raises :class:`FastInstError` when ``root`` has no images, ``out`` exists (without
    ``overwrite``) from a finished run, or a resume's options differ from the stopped run's.
    """
    root, out = Path(root), Path(out)
    shard = shard or Shard.from_env()
    files = list_images(root)
    if not files:
        raise FastInstError(f"no images found under {root}")
    options = {"score_threshold": score_threshold, "class_names": list(predictor.class_names), **(run_options or {})}
    if shard.rank == 0:
        if overwrite:
            _clear(out)
        if out.exists() and not parts_dir(out).exists():
            raise FastInstError(f"{out} exists; pass --overwrite to predict again")
        _start_or_check_run(out, options)
    _barrier(shard)
    if shard.rank != 0:
        _start_or_check_run(out, options)
    # failed images are tried again, and so is a file replaced since its result was written
    done = {name for name, record in read_parts(out, root).items()
            if "error" not in record and record.get("file") == _file_identity(root / name)}
    mine = [(i, name) for i, name in enumerate(files) if i % shard.world_size == shard.rank and name not in done]
    loader = DataLoader(FolderImages(root, mine, predictor.prepare), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate, pin_memory=False)
    part = parts_dir(out) / f"rank{shard.rank}.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    category_ids = list(range(1, len(predictor.class_names) + 1))
    bar = tqdm(total=len(mine), desc=f"predict (rank {shard.rank}/{shard.world_size})", unit="img",
               disable=not progress or shard.rank != 0)
    if part.exists() and part.stat().st_size and not part.read_bytes().endswith(b"\n"):
        with open(part, "a") as sink:
            sink.write("\n")  # end a line cut by a crash, so the next record starts on its own line
    with open(part, "a") as sink:
        for items in loader:
            records = []
            loaded = [item for item in items if item[1] is not None]
            for group in ([loaded[k] for k in g] for g in same_size_groups([(t, o) for _, t, o, _ in loaded])):
                for (index, _, size, _), pred in zip(group, _predict_group(predictor, group, score_threshold)):
                    if isinstance(pred, str):
                        records.append({"file_name": files[index], "error": pred})
                        continue
                    records.append({"file_name": files[index], "file": _file_identity(root / files[index]),
                                    "height": size[0], "width": size[1],
                                    "annotations": to_coco_results(pred.masks, pred.scores, pred.classes,
                                                                   index + 1, category_ids)})
            records += [{"file_name": files[index], "error": error} for index, _, _, error in items if error]
            for record in records:
                sink.write(json.dumps(record) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            bar.update(len(items))
    bar.close()
    _barrier(shard)
    if shard.rank != 0:
        return None
    return merge(files, read_parts(out, root), out, predictor.class_names)


def merge(files: Sequence[str], records: Dict[str, dict], out: Path, class_names: Sequence[str]) -> Path:
    """Write the merged results of ``records`` (by file name) in ``files`` order, then remove the parts."""
    missing = [name for name in files if name not in records]
    if missing:
        raise FastInstError(f"{len(missing)} images have no result (first: {missing[0]}); run again to resume")
    merged = {"images": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
              "annotations": [], "errors": []}
    for i, name in enumerate(files):
        record = records[name]
        if "error" in record:
            merged["errors"].append({"file_name": name, "error": record["error"]})
            continue
        merged["images"].append({"id": i + 1, "file_name": name, "height": record["height"], "width": record["width"]})
        # the id is the image's place in the folder now: a resumed run's folder may have changed
        merged["annotations"] += [{**ann, "image_id": i + 1} for ann in record["annotations"]]

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(merged))

    atomic_write(out, write)
    _clear_parts(out)
    return out


def _file_identity(path: Path) -> List[int]:
    """``[size, modification time (ns)]`` of an image file: a result is reused on resume only for
    the same file (a photo replaced under its name is predicted again)."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _predict_group(predictor: Predictor, group: list, score_threshold: float) -> list:
    """One forward pass for a group of loaded images -> a Prediction per image, or, for an image
    the model fails on, the error's text (the group is then predicted one image at a time, so
    one bad image costs only its own result)."""
    prepared = [(tensor, size) for _, tensor, size, _ in group]
    try:
        return predictor.predict_prepared(prepared, score_threshold)
    except (RuntimeError, ValueError, MemoryError, FastInstError) as exc:
        if len(prepared) == 1:
            return [str(exc) if isinstance(exc, FastInstError) else
                    f"the model failed on this image: {type(exc).__name__}: {exc}"]
    return [_predict_group(predictor, [item], score_threshold)[0] for item in group]


def _start_or_check_run(out: Path, options: Dict[str, object]) -> None:
    """Record a new run's options in ``<out>.parts/run.json``, or check a resumed run's against
    them (FastInstError naming each difference)."""
    manifest = parts_dir(out) / "run.json"
    if not manifest.is_file():
        if read_parts(out):   # parts from before run.json existed: their options are unknown
            raise FastInstError(f"{parts_dir(out)} holds results of a stopped run whose options are not "
                                f"recorded; pass --overwrite to predict again")
        manifest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(manifest, lambda tmp: Path(tmp).write_text(json.dumps(options, indent=1)))
        return
    before = json.loads(manifest.read_text())
    changed = [f"{key} {before.get(key)!r} -> {options.get(key)!r}" for key in sorted(set(before) | set(options))
               if before.get(key) != options.get(key)]
    if changed:
        raise FastInstError(f"{out}: a stopped run with other options is being resumed ({'; '.join(changed)}); "
                            f"resume with the same options, or pass --overwrite to predict again")


def _barrier(shard: Shard) -> None:
    if shard.world_size > 1 and dist.is_initialized():
        dist.barrier()


def _clear_parts(out: Path) -> None:
    folder = parts_dir(out)
    if folder.is_dir():
        for part in [*folder.glob("rank*.jsonl"), folder / "run.json"]:
            part.unlink(missing_ok=True)
        folder.rmdir()


def _clear(out: Path) -> None:
    _clear_parts(out)
    if out.exists():
        out.unlink()


def init_distributed(device: str = "auto") -> Tuple[Shard, torch.device]:
    """Join the ``torchrun`` process group if launched by it (gloo on CPU, NCCL on CUDA, one GPU per
    local rank); return this process's shard and device."""
    shard = Shard.from_env()
    device = str(resolve_device(device))
    dev = torch.device("cuda", shard.local_rank) if device == "cuda" else torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if shard.world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return shard, dev


def close_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()
