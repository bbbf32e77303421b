"""Checks of notebooks/10_inference_loading.ipynb: right answers pass, wrong ones get their hint,
placeholders are "not attempted"."""
import pytest
import torch

from labs_utils.checks import REGISTRY, check
from labs_utils.models import SmallCNN

NAMES = ["load_for_inference", "predict_no_trace"]


def load_for_inference(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = SmallCNN()
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def load_for_inference_via_helper(path):
    from labs_utils.checkpoints import load_checkpoint

    model = SmallCNN().eval()
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def predict(model, images):
    model.eval()
    with torch.inference_mode():
        return model(images).argmax(dim=1)


def predict_no_grad(model, images):
    model.eval()
    with torch.no_grad():
        return model(images).argmax(1)


def _placeholder(*args):
    pass


def test_right_answers():
    assert check.load_for_inference(load_for_inference)
    assert check.load_for_inference(load_for_inference_via_helper)
    assert check.predict_no_trace(predict)
    assert check.predict_no_trace(predict_no_grad)
    assert repr(check.predict_no_trace(predict)).startswith("Correct!")


@pytest.mark.parametrize("name", NAMES)
def test_wrong_answers_get_their_hint(name):
    assert REGISTRY[name].wrong
    for answer, hint in REGISTRY[name].wrong:
        result = REGISTRY[name].fn(answer)
        assert result.status == "wrong", repr(result)
        assert hint.lower() in result.message.lower(), repr(result)
        assert "notebooks/10_inference_loading.ipynb" in repr(result)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("placeholder", [..., None, _placeholder])
def test_placeholders_are_not_attempted(name, placeholder):
    result = REGISTRY[name].fn(placeholder)
    assert result.status == "not attempted", repr(result)


def test_not_a_function():
    result = check.predict_no_trace(42)
    assert result.status == "wrong" and "function" in result.message


def test_a_function_that_returns_logits_on_cuda_free_machine_is_still_judged():
    def returns_list(model, images):
        model.eval()
        with torch.no_grad():
            return model(images).argmax(1).tolist()

    result = check.predict_no_trace(returns_list)
    assert result.status == "wrong" and "tensor" in result.message
