"""normalize_keys / strip_wrapper_prefixes: wrapper prefixes from DataParallel, DDP and torch.compile."""

from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from labs_utils.models import SimpleModel, SmallCNN
from labs_utils.toolkit import normalize_keys
from labs_utils.toolkit.prefixes import WRAPPER_PREFIXES, strip_wrapper_prefixes

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)

PLAIN = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_no_import_cycle_between_state_dicts_and_prefixes():
    import ast
    import inspect

    import labs_utils.toolkit.prefixes as prefixes
    import labs_utils.toolkit.state_dicts as state_dicts

    def imports(module):
        tree = ast.parse(inspect.getsource(module))
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "state_dicts" not in imports(prefixes) and "prefixes" not in imports(state_dicts)


def test_wrapper_prefixes_are_pytorchs():
    model = SimpleModel()
    assert all(k.startswith("module.") for k in nn.DataParallel(model).state_dict())
    assert all(k.startswith("_orig_mod.") for k in torch.compile(model).state_dict())
    assert set(WRAPPER_PREFIXES) == {"module.", "_orig_mod."}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda m: nn.DataParallel(m),
        lambda m: torch.compile(m),
        lambda m: nn.DataParallel(torch.compile(m)),  # module._orig_mod.
        lambda m: torch.compile(nn.DataParallel(m)),  # _orig_mod.module.
        lambda m: nn.DataParallel(nn.DataParallel(m)),  # module.module.
        lambda m: m,  # never wrapped: unchanged
    ],
)
def test_real_wrappers_load_strictly_after_normalizing(wrap):
    model = SimpleModel()
    sd = wrap(model).state_dict()
    out = normalize_keys(sd)
    assert list(out) == PLAIN
    fresh = SimpleModel()
    fresh.load_state_dict(out)  # strict
    for k in PLAIN:
        # same tensor objects, no copies
        assert out[k] is sd[next(s for s in sd if s.endswith(k))]
        assert torch.equal(fresh.state_dict()[k], model.state_dict()[k])


def test_buffers_and_metadata_follow():
    model = SmallCNN()
    sd = nn.DataParallel(torch.compile(model)).state_dict()
    out = normalize_keys(sd)
    assert list(out) == list(model.state_dict())
    assert set(out._metadata) == set(model.state_dict()._metadata)
    assert out._metadata["features.1"] == model.state_dict()._metadata["features.1"]
    SmallCNN().load_state_dict(out)


@pytest.mark.parametrize(
    "key,expected",
    [
        ("module.fc1.weight", "fc1.weight"),
        ("_orig_mod.fc1.weight", "fc1.weight"),
        ("module._orig_mod.module.fc1.weight", "fc1.weight"),
        ("_orig_mod.module.fc1.weight", "fc1.weight"),
        # "module." only somewhere inside: real attribute paths, left alone
        ("encoder.module.weight", "encoder.module.weight"),
        ("submodule.weight", "submodule.weight"),
        ("module.submodule.weight", "submodule.weight"),
        ("blocks.0._orig_mod.bias", "blocks.0._orig_mod.bias"),
        ("modules.weight", "modules.weight"),
        ("module", "module"),
        ("module.", "module."),  # nothing would be left: kept
    ],
)
def test_strip_only_at_the_start(key, expected):
    assert strip_wrapper_prefixes(key) == expected


def test_keys_containing_module_in_the_middle_are_untouched():
    sd = OrderedDict([("encoder.module.weight", torch.ones(1)), ("submodule.bias", torch.zeros(1))])
    assert list(normalize_keys(sd)) == ["encoder.module.weight", "submodule.bias"]
    wrapped = OrderedDict(("module." + k, v) for k, v in sd.items())
    assert list(normalize_keys(wrapped)) == ["encoder.module.weight", "submodule.bias"]


def test_collision_is_refused_with_both_keys_named():
    sd = OrderedDict([("module.fc1.weight", torch.ones(1)), ("fc1.weight", torch.zeros(1))])
    with pytest.raises(
        ValueError, match=r"'module\.fc1\.weight' and 'fc1\.weight' to 'fc1\.weight'"
    ):
        normalize_keys(sd)
    nested = OrderedDict([("module._orig_mod.w", torch.ones(1)), ("_orig_mod.w", torch.zeros(1))])
    with pytest.raises(ValueError, match="mixes wrapped and unwrapped"):
        normalize_keys(nested)


def test_like_resolves_a_submodule_really_named_module():
    # keys: module.weight, module.bias
    inner = nn.ModuleDict({"module": nn.Linear(2, 2)})
    sd = nn.DataParallel(inner).state_dict()  # module.module.weight: ambiguous from keys alone
    assert list(normalize_keys(sd)) == ["weight", "bias"]
    assert list(normalize_keys(sd, like=inner)) == ["module.weight", "module.bias"]
    assert list(normalize_keys(inner.state_dict(), like=inner.state_dict())) == [
        "module.weight",
        "module.bias",
    ]
    nn.ModuleDict({"module": nn.Linear(2, 2)}).load_state_dict(normalize_keys(sd, like=inner))


def test_custom_prefixes():
    sd = OrderedDict([("model.fc1.weight", torch.ones(1)), ("ema.decay", torch.ones(1))])
    assert list(normalize_keys(sd, prefixes=("model.",))) == ["fc1.weight", "ema.decay"]


def test_matches_pytorchs_consume_prefix():
    sd = nn.DataParallel(SimpleModel()).state_dict()
    theirs = OrderedDict(sd)
    theirs._metadata = sd._metadata.copy()
    consume_prefix_in_state_dict_if_present(theirs, "module.")
    ours = normalize_keys(sd)
    assert list(ours) == list(theirs)
    assert list(sd)[0] == "module.fc1.weight"  # ours does not change its input


def test_accepts_a_model_and_a_path(tmp_path):
    model = nn.DataParallel(SimpleModel())
    assert list(normalize_keys(model)) == PLAIN
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    assert list(normalize_keys(path)) == PLAIN


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        ("module.", TypeError, "list or tuple"),
        (("module",), ValueError, "must end with '.'"),
        (("",), TypeError, "non-empty"),
        ((), ValueError, "empty"),
        ((3,), TypeError, "non-empty string"),
    ],
)
def test_bad_prefixes(bad, exc, match):
    with pytest.raises(exc, match=match):
        normalize_keys({"module.w": torch.ones(1)}, prefixes=bad)


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="got int"):
        normalize_keys(42)
    with pytest.raises(TypeError, match="string keys"):
        normalize_keys({1: torch.ones(1)})
    with pytest.raises(ValueError, match="checkpoint"):
        normalize_keys({"model": {"w": torch.ones(1)}, "epoch": 3})
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        normalize_keys(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="strings"):
        strip_wrapper_prefixes(3)


def test_normalize_keys_copies_metadata_without_the_assign_flag():
    model = torch.nn.Linear(2, 2)
    sd = model.state_dict()
    with torch.device("meta"):
        torch.nn.Linear(2, 2).load_state_dict(sd, assign=True)  # pytorch#188166: sets a flag
    saved = type(sd)(("module." + k, v) for k, v in sd.items())
    saved._metadata = type(sd._metadata)(
        ("module" + ("." + k if k else ""), v) for k, v in sd._metadata.items()
    )
    out = normalize_keys(saved)
    assert "assign_to_params_buffers" not in out._metadata[""]
    assert saved._metadata["module"]["assign_to_params_buffers"] is True
    out._metadata[""]["version"] = 99  # a copy: the input's metadata does not change
    assert saved._metadata["module"].get("version") != 99
    fresh = torch.nn.Linear(2, 2)
    weight = fresh.weight
    fresh.load_state_dict(normalize_keys(saved))
    assert fresh.weight is weight
