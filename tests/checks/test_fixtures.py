"""The shared check fixtures do what the check modules rely on."""

from __future__ import annotations

import torch
from torch import load as aliased_load  # as a learner's `from torch import load`

from labs_utils.checks import fixtures
from labs_utils.models import SmallCNN


def test_cnn_with_moved_statistics_is_seeded_and_moved():
    a = fixtures.cnn_with_moved_statistics(3, dropout=0.0)
    b = fixtures.cnn_with_moved_statistics(3, dropout=0.0)
    default = SmallCNN(dropout=0.0).state_dict()
    assert a.training
    assert fixtures.changed_keys(a, fixtures.snapshot(b)) == []
    moved = [k for k, v in a.state_dict().items() if "running" in k or "num_batches" in k]
    assert moved and all(not torch.equal(a.state_dict()[k], default[k]) for k in moved)


def test_snapshot_is_a_copy_and_changed_keys_names_what_moved():
    model = SmallCNN()
    before = fixtures.snapshot(model)
    assert fixtures.changed_keys(model, before) == []
    with torch.no_grad():
        model.features[0].weight.add_(1.0)
    assert fixtures.changed_keys(model, before) == ["features.0.weight"]
    assert not torch.equal(before["features.0.weight"], model.features[0].weight)


def test_scratch_file_is_removed_with_its_folder():
    with fixtures.scratch_file("w.pth") as path:
        assert path.name == "w.pth" and path.parent.is_dir() and not path.exists()
        path.write_bytes(b"x")
    assert not path.parent.exists()


def test_replaced_torch_load_covers_imported_aliases_and_restores(tmp_path):
    real = torch.load
    seen = []

    def learner(p):
        return aliased_load(p, weights_only=True)

    def load(f, *args, **kwargs):
        seen.append(str(f))
        return real(f, *args, **kwargs)

    path = tmp_path / "t.pth"
    torch.save({"x": torch.ones(1)}, path)
    with fixtures.replaced(learner, (torch, torch.serialization), load=load):
        learner(path)
        torch.load(path, weights_only=True)
        torch.serialization.load(path, weights_only=True)
    assert seen == [str(path)] * 3
    assert torch.load is real and torch.serialization.load is real and aliased_load is real
