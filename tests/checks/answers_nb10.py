"""Wrong and right answers for the checks in labs_utils/checks/nb10.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy

import torch


def _no_eval(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True)["model"])
    return model


def _whole_dict(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _not_loaded(path):
    from labs_utils.models import SmallCNN

    return SmallCNN().eval()


def _whole_dict_not_strict(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True), strict=False)
    return model.eval()


def _meta_and_assign(path):
    """Notebook 10's fast route, without setting the non-persistent buffer afterwards."""
    from labs_utils.models import SmallCNN

    with torch.device("meta"):
        model = SmallCNN()
    model.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=True)["model"], assign=True
    )
    return model.eval()


def _parameters_only(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    weights = torch.load(path, map_location="cpu", weights_only=True)["model"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name])
    return model.eval()


def _unsafe_load(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
    return model.eval()


def _head_only_eval(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    model.classifier.eval()
    return model


def _via_helper(path):
    from labs_utils.models import SmallCNN
    from labs_utils.toolkit import load_checkpoint

    model = SmallCNN().eval()
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _train_false_and_mmap(path):
    from labs_utils.models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(
        torch.load(str(path), map_location=torch.device("cpu"), weights_only=True, mmap=True)[
            "model"
        ]
    )
    return model.train(False)


def _meta_assign_and_buffer(path):
    from labs_utils.models import SmallCNN

    with torch.device("meta"):
        model = SmallCNN()
    model.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=True)["model"], assign=True
    )
    model.input_scale = torch.tensor(1.0)
    return model.eval()


def _no_eval_predict(model, images):
    with torch.inference_mode():
        return model(images).argmax(dim=1)


def _logits(model, images):
    model.eval()
    with torch.inference_mode():
        return model(images)


def _with_grad(model, images):
    model.eval()
    return model(images).argmax(dim=1).float().requires_grad_()


def _argmax_with_graph(model, images):
    model.eval()
    return model(images).argmax(1)


def _grad_off_for_good(model, images):
    torch.set_grad_enabled(False)
    model.eval()
    return model(images).argmax(dim=1)


def _no_parentheses(model, images):
    model.eval()
    with torch.no_grad:  # the class, not an instance
        return model(images).argmax(dim=1)


def _copy_without_eval(model, images):
    # keeps the caller's BatchNorm statistics, but Dropout is still on
    scratch = copy.deepcopy(model)
    with torch.no_grad():
        return scratch(images).argmax(dim=1)


def _seeded_train_mode(model, images):
    torch.manual_seed(0)  # "the same answer every time", by fixing Dropout's masks
    with torch.no_grad():
        return model(images).argmax(dim=1)


def _float_classes(model, images):
    model.eval()
    with torch.no_grad():
        return model(images).softmax(dim=1).argmax(dim=1).float()


def _argmax_dim0(model, images):
    model.eval()
    with torch.inference_mode():
        return model(images).argmax(dim=0)


def _grad_off_then_on(model, images):
    torch.set_grad_enabled(False)
    try:
        model.eval()
        return model(images).argmax(dim=1)
    finally:
        torch.set_grad_enabled(True)


@torch.no_grad()
def _decorated_and_restored(model, images):
    was_training = model.training
    model.eval()
    try:
        return model(images).softmax(dim=-1).argmax(dim=-1)
    finally:
        model.train(was_training)


def _int32_classes(model, images):
    model.train(False)
    with torch.inference_mode():
        return model(images).argmax(1).int()


WRONG = {
    "load_for_inference": [
        (_no_eval, "eval"),
        (_whole_dict, "'model' entry"),
        (_not_loaded, "never called"),
        (_whole_dict_not_strict, "strict=false"),
        (_meta_and_assign, "input_scale"),
        (_parameters_only, "running_mean"),
        (_unsafe_load, "weights_only=true"),
        (_head_only_eval, "still in training mode"),
    ],
    "predict_no_trace": [
        (_no_eval_predict, "eval"),
        (_logits, "argmax"),
        (_with_grad, "autograd"),
        (_argmax_with_graph, "autograd on"),
        (_grad_off_for_good, "autograd off for the whole process"),
        (_no_parentheses, "parentheses"),
        (_copy_without_eval, "dropout"),
        (_seeded_train_mode, "running_mean"),
        (_float_classes, "integer"),
        (_argmax_dim0, "dim=1"),
    ],
}
RIGHT = {
    "load_for_inference": [_via_helper, _train_false_and_mmap, _meta_assign_and_buffer],
    "predict_no_trace": [_grad_off_then_on, _decorated_and_restored, _int32_classes],
}
