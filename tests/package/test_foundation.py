"""seed_everything, scratch_dir, models, data and training loops."""

import random

import numpy as np
import pytest
import torch

import labs_utils
from labs_utils import models
from labs_utils.data import blobs, make_loaders, tiny_images
from labs_utils.training import evaluate, train_epoch


def test_seed_everything_repeats_all_generators():
    labs_utils.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(3))
    labs_utils.seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("bad", ["0", 1.5, None, True])
def test_seed_everything_rejects_non_int(bad):
    with pytest.raises(TypeError, match="expects an int seed"):
        labs_utils.seed_everything(bad)


def test_seed_everything_rejects_out_of_range():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        labs_utils.seed_everything(-1)


def test_scratch_dir_is_relative_and_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = labs_utils.scratch_dir("01_x")
    assert not d.is_absolute() and d.as_posix() == "runs/01_x"
    (d / "f.txt").write_text("x")
    d2 = labs_utils.scratch_dir("01_x")
    assert d2 == d and list(d2.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "a/b", "..", 3])
def test_scratch_dir_rejects_paths(bad):
    with pytest.raises(ValueError, match="plain folder name"):
        labs_utils.scratch_dir(bad)


def test_document_models_run_with_their_inputs():
    assert models.SimpleModel()(torch.randn(4, 10)).shape == (4, 2)
    assert models.SimpleModelDifferent().fc1.out_features == 6
    assert models.ComplexModel()(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    assert models.ComplexModel().fc1.in_features == 16 * 30 * 30
    assert models.ModifiedComplexModel().fc1.out_features == 12
    assert models.ModifiedComplexModel().fc2.in_features == 12
    assert models.Net()(torch.randn(3, 32)).shape == (3, 10)


def test_complex_model_fails_loudly_on_wrong_input_size():
    with pytest.raises(RuntimeError):
        models.ComplexModel()(torch.randn(2, 3, 28, 28))


def test_conv_output_size_matches_pytorch():
    for size, k, s, p in [(32, 3, 1, 0), (28, 5, 2, 1), (16, 3, 1, 1)]:
        out = torch.nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.randn(1, 1, size, size))
        assert out.shape[-1] == models.conv_output_size(size, k, s, p)


def test_small_cnn_buffers():
    cnn = models.SmallCNN()
    sd = cnn.state_dict()
    assert "input_scale" not in sd and hasattr(cnn, "input_scale")
    assert "features.1.running_mean" in sd and "features.1.num_batches_tracked" in sd
    assert cnn(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_renamed_cnn_has_same_shapes_other_names():
    a, b = models.SmallCNN().state_dict(), models.RenamedCNN().state_dict()
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]
    assert all(k.startswith(("backbone.", "head.")) for k in b)


def test_data_is_deterministic():
    a, b = blobs(seed=3), blobs(seed=3)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert not torch.equal(blobs(seed=4).tensors[0], a.tensors[0])
    x, y = tiny_images(32).tensors
    assert x.shape == (32, 1, 16, 16) and y.max() < 4


def test_data_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_classes >= 2"):
        blobs(n_classes=1)
    with pytest.raises(ValueError, match="quadrant"):
        tiny_images(n_classes=5)


def test_training_learns_blobs():
    train, val = make_loaders(blobs(n_samples=256), batch_size=32)
    model = models.SimpleModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        train_epoch(model, train, opt)
    metrics = evaluate(model, val)
    assert metrics["accuracy"] > 0.9 and metrics["loss"] < 0.5
    assert model.training  # evaluate restores the mode


def test_training_rejects_empty_loader():
    model = models.SimpleModel()
    with pytest.raises(ValueError, match="empty loader"):
        train_epoch(model, [], torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="empty loader"):
        evaluate(model, [])
