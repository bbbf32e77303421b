"""Checks of notebooks/10_inference_loading.ipynb: right answers pass, and what makes the checks hard
to fool (the returned model is run, unsafe loads and grad mode left off are seen under any imported
name). tests/checks/test_framework.py feeds every declared wrong answer."""

import torch
from torch import load  # a learner may import it by name

from labs_utils.checks import check
from labs_utils.models import SmallCNN


def load_for_inference(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = SmallCNN()
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def load_for_inference_via_helper(path):
    from labs_utils.toolkit import load_checkpoint

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


def test_right_answers():
    assert check.load_for_inference(load_for_inference)
    assert check.load_for_inference(load_for_inference_via_helper)
    assert check.predict_no_trace(predict)
    assert check.predict_no_trace(predict_no_grad)
    assert repr(check.predict_no_trace(predict)).startswith("Correct!")


def test_not_a_function():
    result = check.predict_no_trace(42)
    assert result.status == "wrong" and "function" in result.message


def test_a_function_that_returns_a_list_is_told_to_return_a_tensor():
    def returns_list(model, images):
        model.eval()
        with torch.no_grad():
            return model(images).argmax(1).tolist()

    result = check.predict_no_trace(returns_list)
    assert result.status == "wrong" and "tensor" in result.message


def test_grad_mode_left_off_is_refused_and_put_back():
    def grad_off(model, images):
        torch.set_grad_enabled(False)
        model.eval()
        return model(images).argmax(dim=1)

    result = check.predict_no_trace(grad_off)
    assert result.status == "wrong" and "torch.no_grad()" in result.message
    assert torch.is_grad_enabled()


def test_an_unsafe_load_under_an_imported_name_is_seen():
    def unsafe(path):
        model = SmallCNN()
        model.load_state_dict(load(path, map_location="cpu", weights_only=False)["model"])
        return model.eval()

    result = check.load_for_inference(unsafe)
    assert result.status == "wrong" and "weights_only=False" in result.message
    assert torch.load is load


def test_the_check_puts_load_state_dict_back():
    real = torch.nn.Module.load_state_dict
    check.load_for_inference(load_for_inference)
    assert torch.nn.Module.load_state_dict is real
