"""Checks of notebooks/10_inference_loading.ipynb: right answers pass, wrong ones get their hint,
placeholders are "not attempted"."""
import torch

from labs_utils.checks import check
from labs_utils.models import SmallCNN



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



def test_right_answers():
    assert check.load_for_inference(load_for_inference)
    assert check.load_for_inference(load_for_inference_via_helper)
    assert check.predict_no_trace(predict)
    assert check.predict_no_trace(predict_no_grad)
    assert repr(check.predict_no_trace(predict)).startswith("Correct!")


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
