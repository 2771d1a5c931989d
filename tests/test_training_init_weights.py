"""Fine-tuning from one of our checkpoints: strict load, or class rows carried over by name."""
import pytest
import torch

from fastinst import build_model, save_checkpoint
from training.init_weights import class_dependent_keys, load_initial_weights


def test_class_rows_follow_names(tmp_path):
    torch.manual_seed(0)
    old = build_model("tiny", num_classes=3)
    path = save_checkpoint(tmp_path / "old.safetensors", old, preset="tiny", class_names=["a", "b", "c"])
    new = build_model("tiny", num_classes=3)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    with pytest.warns(UserWarning, match="class list differs"):
        how, _ = load_initial_weights(new, path, "tiny", ["c", "a", "d"])
    assert how == "by-name"
    keys = class_dependent_keys("tiny", 3)
    assert keys and all(k.startswith("decoder.") for k in keys)
    o, n = old.state_dict(), new.state_dict()
    for key in keys:
        assert torch.equal(n[key][0], o[key][2]) and torch.equal(n[key][1], o[key][0])  # c, a
        assert torch.equal(n[key][2], fresh[key][2])  # d is new
        assert torch.equal(n[key][-1], o[key][-1])  # no-object row
    other = next(k for k in o if k not in keys and o[k].is_floating_point())
    assert torch.equal(n[other], o[other])


def test_same_classes_load_strictly_and_other_preset_is_refused(tmp_path):
    model = build_model("tiny", num_classes=2)
    path = save_checkpoint(tmp_path / "m.safetensors", model, preset="tiny", class_names=["x", "y"])
    target = build_model("tiny", num_classes=2)
    assert load_initial_weights(target, path, "tiny", ["x", "y"])[0] == "strict"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), target.state_dict().values()))
    with pytest.raises(ValueError, match="preset"):
        load_initial_weights(target, path, "D1-R50-576", ["x", "y"])
