"""Two processes with gloo through torchrun's launcher: DDP keeps both ranks' weights identical."""
import json
import subprocess
import sys

import torch

from fastinst import build_model
from test_training_helpers import REPO, env, fast_args, tiny_dataset, weights


def test_torchrun_two_gloo_processes_hold_identical_weights(tmp_path):
    json_path = tiny_dataset(tmp_path / "data", num_images=6)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "training.train", *fast_args(json_path, out, max_iters=3, batch_size=2)]
    result = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    digests = [r["replica_sha256"] for r in records if "replica_sha256" in r][-1]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3]  # rank 0 logs, once per iteration
    final = weights(out / "model_final.safetensors")
    torch.manual_seed(42)
    init = build_model("tiny", num_classes=3).state_dict()
    assert any(not torch.equal(init[k], final[k]) for k in final if final[k].is_floating_point())
