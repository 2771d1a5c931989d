"""The Python API the studio calls: progress callback, stop flag, negatives, checkpoint metadata;
and the CLIs' help."""
import json
import subprocess
import sys

import torch

from fastinst import load_checkpoint
from training import TrainConfig, train
from training.augment import AugmentConfig
from training.losses import LossConfig
from test_training_helpers import REPO, tiny_dataset


def config(json_path, out, **kw):
    base = dict(train_json=str(json_path), image_root=str(json_path.parent / "images"), output_dir=str(out),
                preset="tiny", device="cpu", max_iters=4, batch_size=2, num_workers=0, log_period=1,
                augment=AugmentConfig(min_sizes=(96,), max_size=128, crop_prob=0.0), loss=LossConfig(num_points=128),
                progress_bar=False)
    base.update(kw)
    return TrainConfig(**base)


def test_progress_and_stop_flag_and_negatives(tmp_path):
    json_path = tiny_dataset(tmp_path / "data", num_images=4)
    data = json.loads(json_path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]  # image 1: all objects deleted
    json_path.write_text(json.dumps(data))
    calls = []
    path = train(config(json_path, tmp_path / "run"), progress=lambda it, total, m: calls.append((it, total, m)),
                 should_stop=lambda: len(calls) >= 2)
    assert [(it, total) for it, total, _ in calls] == [(1, 4), (2, 4)]
    assert all(torch.isfinite(torch.tensor(m["loss"])) and "lr" in m for _, _, m in calls)
    model, info = load_checkpoint(path)
    assert info.preset == "tiny" and info.class_names == ["circle", "square", "triangle"]
    assert info.provenance["stopped_early"] is True and info.provenance["iterations"] == 2
    assert info.provenance["train_images"] == 4  # the emptied image is kept as a negative
    assert info.provenance["training_config"]["loss"]["num_points"] == 128
    state = torch.load(tmp_path / "run" / "last_checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2 and set(state) >= {"model", "optimizer", "scheduler", "rng"}
    dropped = config(json_path, tmp_path / "run2", keep_empty_images=False, max_iters=1)
    assert load_checkpoint(train(dropped))[1].provenance["train_images"] == 3


def test_cli_help_explains_every_option():
    import importlib
    for module in ("training.cli", "training.evaluate", "training.make_demo_model"):
        parser = importlib.import_module(module).build_parser()
        actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
        assert actions and all(a.help and len(a.help) > 10 for a in actions), module
        text = parser.format_help()
        assert all(a.option_strings[0] in text for a in actions)
    out = subprocess.run([sys.executable, "-m", "training.train", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "--train-json" in out.stdout and "torchrun" in out.stdout, out.stderr


def test_mixed_precision_step_runs_on_cpu(tmp_path):
    """The AMP path (bf16 autocast; matching kept in fp32) trains with finite losses."""
    json_path = tiny_dataset(tmp_path / "data", num_images=2)
    losses = []
    train(config(json_path, tmp_path / "amp", amp="bf16", max_iters=2), progress=lambda it, t, m: losses.append(m["loss"]))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(v)) for v in losses)


def test_evaluation_does_not_depend_on_the_batch_size(tmp_path):
    """A dataset of four image sizes, interleaved: the demo model's mask AP is the same predicted
    one image at a time or four at a time (images of one size share a forward pass; padding a
    batch to its largest image changed the AP by 0.6 AP50)."""
    from training.evaluate import evaluate
    from training.synthetic import make_shapes_dataset

    merged = {"images": [], "annotations": [], "categories": None}
    for k, size in enumerate([(128, 128), (96, 192), (192, 96), (128, 224)]):
        gt = json.loads(make_shapes_dataset(tmp_path / f"s{k}", 6, seed=100 + k, size=size).read_text())
        merged["categories"] = gt["categories"]
        ids = {}
        for im in gt["images"]:
            ids[im["id"]] = len(merged["images"]) + 1
            merged["images"].append(dict(im, id=ids[im["id"]], file_name=f"s{k}/images/{im['file_name']}"))
        merged["annotations"] += [dict(a, id=len(merged["annotations"]) + n + 1, image_id=ids[a["image_id"]])
                                  for n, a in enumerate(gt["annotations"])]
    merged["images"].sort(key=lambda im: (im["id"] - 1) % 6)   # neighbours in the file differ in size
    (tmp_path / "val.json").write_text(json.dumps(merged))
    weights = REPO / "app" / "assets" / "demo_model.safetensors"
    one, four = (evaluate(weights, tmp_path / "val.json", tmp_path, batch_size=b, progress=False, device="cpu")
                 for b in (1, 4))
    assert abs(one["segm/AP"] - four["segm/AP"]) < 1e-6 and abs(one["segm/AP50"] - four["segm/AP50"]) < 1e-6


def test_moving_average_of_weights_is_what_is_evaluated_and_saved(tmp_path):
    """With ema_decay the saved model is the moving average (kept in the resume checkpoint too),
    not the raw weights; the evaluation at the start scores the starting weights."""
    from safetensors.torch import load_file
    json_path = tiny_dataset(tmp_path / "data", num_images=4)
    start = train(config(json_path, tmp_path / "init", max_iters=1))
    run = config(json_path, tmp_path / "ema", ema_decay=0.5, max_iters=3, init_weights=str(start), val_json=str(json_path),
                 val_image_root=str(json_path.parent / "images"), eval_at_start=True, eval_period=0)
    final = train(run)
    state = torch.load(tmp_path / "ema" / "last_checkpoint.pt", weights_only=True)
    saved = load_file(str(final))
    shared = [k for k in saved if f"module.{k}" in state["ema"]]
    assert len(shared) == len(saved)
    assert all(torch.allclose(saved[k].float(), state["ema"][f"module.{k}"].float()) for k in shared)
    assert any(not torch.allclose(saved[k].float(), state["model"][k].float()) for k in shared)
    evals = [json.loads(line)["eval"]["segm/AP"] for line in (tmp_path / "ema" / "metrics.jsonl").read_text().splitlines()
             if "eval" in line]
    from training.evaluate import evaluate
    first = evaluate(start, json_path, json_path.parent / "images", device="cpu", progress=False)["segm/AP"]
    assert evals[0] == first
