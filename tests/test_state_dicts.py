"""labs_utils.toolkit.state_dicts: summarize and diff."""

import pytest
import torch
import torch.nn as nn

from labs_utils.models import SimpleModel, SimpleModelDifferent, SmallCNN
from labs_utils.toolkit import diff, summarize


def test_summarize_model_marks_parameters_and_buffers():
    s = summarize(SmallCNN())
    kinds = {r["key"]: r["kind"] for r in s.rows}
    assert kinds["features.0.weight"] == "parameter"
    assert kinds["features.1.running_mean"] == "buffer"
    assert kinds["features.1.num_batches_tracked"] == "buffer"
    assert s.non_persistent_buffers == ["input_scale"]
    assert "input_scale" not in s.keys()
    assert "non-persistent" in str(s) and "input_scale" in s._repr_html_()


def test_summarize_counts_bytes_and_elements():
    s = summarize(SimpleModel().state_dict())
    assert s.total_elements == 10 * 5 + 5 + 5 * 2 + 2
    assert s.total_bytes == 4 * s.total_elements
    row = s.rows[0]
    assert (
        row["key"] == "fc1.weight"
        and row["shape"] == "(5, 10)"
        and row["dtype"] == "float32"
    )
    assert row["device"] == "cpu" and "kind" not in row
    text = str(s)
    assert "fc1.weight" in text and "(5, 10)" in text and "268 B" in text
    assert "<table>" in s._repr_html_()


def test_summarize_dtypes_and_non_tensor_entries():
    s = summarize(
        {
            "a": torch.zeros(3, dtype=torch.float16),
            "b": torch.zeros((), dtype=torch.int64),
        }
    )
    assert [r["bytes"] for r in s.rows] == [6, 8]
    assert [r["dtype"] for r in s.rows] == ["float16", "int64"]


def test_summarize_empty_state_dict():
    s = summarize({})
    assert len(s) == 0 and "0 entries" in str(s)


def test_summarize_from_file(tmp_path):
    p = tmp_path / "w.pth"
    torch.save(SimpleModel().state_dict(), p)
    assert summarize(p).keys() == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert summarize(str(p)).total_elements == 67


def test_summarize_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        summarize(tmp_path / "nope.pth")


def test_summarize_training_checkpoint_says_which_entry(tmp_path):
    ckpt = {"model": SimpleModel().state_dict(), "epoch": 3}
    with pytest.raises(ValueError, match=r"checkpoint\['model'\]"):
        summarize(ckpt)
    p = tmp_path / "last.pth"
    torch.save(ckpt, p)
    with pytest.raises(ValueError, match=r"last.pth.*checkpoint\['model'\]"):
        summarize(p)


@pytest.mark.parametrize("bad", [42, [1, 2], torch.zeros(3)])
def test_summarize_wrong_types(bad):
    with pytest.raises(TypeError, match="expected an nn.Module"):
        summarize(bad)


def test_summarize_rejects_non_string_keys():
    with pytest.raises(TypeError, match="string keys"):
        summarize({0: torch.zeros(1)})


def test_diff_identical_is_truthy():
    m = SimpleModel()
    d = diff(m, SimpleModel().state_dict())
    assert d and d.loads_strictly and not d.missing and "compatible" in str(d)


def test_diff_reports_what_load_state_dict_reports():
    saved = SimpleModel().state_dict()
    saved["extra.weight"] = torch.zeros(1)
    del saved["fc2.bias"]
    model = SimpleModelDifferent()
    d = diff(model, saved)
    assert not d
    assert d.missing == ["fc2.bias"] and d.unexpected == ["extra.weight"]
    assert d.shape_mismatches == {
        "fc1.weight": ((6, 10), (5, 10)),
        "fc1.bias": ((6,), (5,)),
        "fc2.weight": ((2, 6), (2, 5)),
    }
    with pytest.raises(RuntimeError) as err:
        model.load_state_dict(saved)
    for key in ["fc2.bias", "extra.weight", "fc1.weight", "fc1.bias", "fc2.weight"]:
        assert key in str(err.value)
    text = str(d)
    assert "(6, 10)" in text and "(5, 10)" in text and "not compatible" in text


def test_diff_dtype_difference_loads_but_is_not_fully_compatible():
    half = {k: v.half() for k, v in SimpleModel().state_dict().items()}
    d = diff(SimpleModel(), half)
    assert d.loads_strictly and not d
    assert d.dtype_differences["fc1.weight"] == ("float32", "float16")
    SimpleModel().load_state_dict(half)  # really loads (cast)


def test_diff_empty_state_dict_all_missing():
    d = diff(SimpleModel(), {})
    assert d.missing == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] and not d


def test_diff_non_persistent_buffers_are_not_expected():
    cnn = SmallCNN()
    assert diff(cnn, SmallCNN().state_dict())
    assert "input_scale" not in diff(cnn, {}).missing


def test_diff_arguments_in_wrong_order():
    with pytest.raises(TypeError, match="model first"):
        diff(SimpleModel().state_dict(), SimpleModel())


def test_diff_with_tied_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight

    sd = Tied().state_dict()
    assert set(sd) == {"emb.weight", "out.weight"}
    assert diff(Tied(), sd)
