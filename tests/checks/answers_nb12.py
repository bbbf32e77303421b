"""Wrong and right answers for the checks in labs_utils/checks/nb12.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn


def _save_whole(model, path):
    torch.save(model, path)


def _save_params_only(model, path):
    torch.save(dict(model.named_parameters()), path)


def _save_method(model, path):
    torch.save(model.state_dict, path)  # the method, not its result


def _save_wrapped(model, path):
    torch.save({"model": model.state_dict()}, path)


def _save_params_detached(model, path):
    torch.save({k: v.detach() for k, v in model.named_parameters()}, path)


def _save_half(model, path):
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)


def _save_numpy(model, path):
    torch.save({k: v.numpy() for k, v in model.state_dict().items()}, path)


def _save_other_model(model, path):
    # like using the notebook's global `model`
    torch.save(type(model)().state_dict(), path)


def _save_keep_vars(model, path):
    torch.save(model.state_dict(keep_vars=True), path)


def _save_safetensors(model, path):
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path))


def _save_detached_copy(model, path):
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, path)


def _save_with_helper(model, path):
    from labs_utils.toolkit import save_checkpoint

    save_checkpoint(model.state_dict(), path)


def _save_model_only(model, optimizer, scheduler, epoch, path):
    torch.save({"model": model.state_dict(), "epoch": epoch}, path)


def _save_no_scheduler(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_wrong_optimizer_state(model, optimizer, scheduler, epoch, path):
    fresh = type(optimizer)(model.parameters(), **{"lr": optimizer.defaults["lr"]})
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": fresh.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_param_groups_only(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict()["param_groups"],
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_optimizer_object(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer,
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_last_lr(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.get_last_lr(),
            "epoch": epoch,
        },
        path,
    )


def _save_lr_scheduler_key(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_parameters_only_model(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": {k: v.detach() for k, v in model.named_parameters()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        },
        path,
    )


def _save_next_epoch(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
        },
        path,
    )


def _save_torch_version(model, optimizer, scheduler, epoch, path):
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "version": torch.__version__,
        },
        path,
    )


def _save_list(model, optimizer, scheduler, epoch, path):
    torch.save(
        [model.state_dict(), optimizer.state_dict(), scheduler.state_dict(), epoch],
        path,
    )


def _save_resume_deepcopy(model, optimizer, scheduler, epoch, path):
    import copy

    from labs_utils.toolkit import capture_rng_state

    torch.save(
        dict(
            model=model.state_dict(),
            optimizer=copy.deepcopy(optimizer.state_dict()),
            scheduler=scheduler.state_dict(),
            epoch=int(epoch),
            rng=capture_rng_state(),
            version=str(torch.__version__),
        ),
        path,
    )


def _load_strict(path):
    from labs_utils.models import Net

    model = Net()
    model.load_state_dict(torch.load(path))
    return model


def _load_non_strict(path):
    from labs_utils.models import Net

    model = Net()
    model.load_state_dict(torch.load(path), strict=False)
    return model


def _load_stripped_non_strict(path):
    from labs_utils.models import Net

    state = {k.removeprefix("module."): v for k, v in torch.load(path).items()}
    model = Net()
    model.load_state_dict(state, strict=False)
    return model


def _load_into_data_parallel(path):
    from labs_utils.models import Net

    state = torch.load(path)
    if not next(iter(state)).startswith("module."):
        state = {f"module.{k}": v for k, v in state.items()}
    model = nn.DataParallel(Net())
    model.load_state_dict(state)
    return model


def _load_slice_every_key(path):
    from labs_utils.models import Net

    model = Net()
    model.load_state_dict({k[7:]: v for k, v in torch.load(path).items()})
    return model


def _load_returns_result(path):
    from labs_utils.models import Net

    state = {k.removeprefix("module."): v for k, v in torch.load(path).items()}
    return Net().load_state_dict(state)


def _load_only_ddp_files(path):
    from labs_utils.models import Net

    state = torch.load(path)
    model = Net()
    if next(iter(state)).startswith("module."):
        model.load_state_dict({k[len("module.") :]: v for k, v in state.items()})
    return model  # a plain file: nothing loaded


def _load_positional_false(path):
    from labs_utils.models import Net

    state = torch.load(path)
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state, "module.")
    model = Net()
    model.load_state_dict(state, False)
    return model


def _load_normalize_keys(path):
    from labs_utils.models import Net
    from labs_utils.toolkit import normalize_keys

    model = Net()
    model.load_state_dict(normalize_keys(torch.load(path, map_location="cpu", weights_only=True)))
    return model


def _load_removeprefix(path):
    from labs_utils.models import Net

    model = Net()
    model.load_state_dict(
        {k.removeprefix("module."): v for k, v in torch.load(path).items()}, strict=True
    )
    return model


def _load_gpu_default(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path))
    return model


def _load_gpu_then_cuda(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel().to("cuda")  # the code the GPU box ran
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model


def _load_gpu_cuda_prefix_dict(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location={"cuda": "cpu"}))
    return model


def _load_gpu_cpu_after(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path))
    return model.cpu()


def _load_gpu_default_device(path):
    from labs_utils.models import SimpleModel

    with torch.device("cpu"):
        model = SimpleModel()
        model.load_state_dict(torch.load(path))
    return model


def _load_gpu_map_cuda(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location="cuda:0"))
    return model


def _load_gpu_device_values(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location={"cuda:0": torch.device("cpu")}))
    return model


def _load_gpu_returns_state(path):
    return torch.load(path, map_location="cpu")


def _load_gpu_device_at_run_time(path):
    from labs_utils.models import SimpleModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return model.to("cpu")


def _load_gpu_full_tag_dict(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location={"cuda:0": "cpu"}))
    return model


def _load_gpu_lambda(path):
    from labs_utils.models import SimpleModel

    model = SimpleModel()
    model.load_state_dict(torch.load(path, map_location=lambda storage, location: storage))
    return model


def _load_unsafe(path):
    return torch.load(path, weights_only=False)


def _load_default(path):
    return torch.load(path)


def _load_process_wide(path):
    from labs_utils.capstone import RunInfo

    torch.serialization.add_safe_globals([RunInfo])
    return torch.load(path, weights_only=True)


def _load_by_name(path):
    with torch.serialization.safe_globals(["labs_utils.capstone.RunInfo"]):
        return torch.load(path, weights_only=True)


def _load_fallback(path):
    from labs_utils.capstone import RunInfo

    try:
        with torch.serialization.safe_globals([RunInfo]):
            return torch.load(path, weights_only=True)
    except Exception:
        return torch.load(path, weights_only=False)


def _load_then_validate(path):
    from labs_utils.capstone import RunInfo

    card = torch.load(path, weights_only=False)
    if not isinstance(card.get("info"), RunInfo):  # too late: unpickling already ran the payload
        raise ValueError("unexpected object in the model card")
    return card


def _load_swallow(path):
    from labs_utils.capstone import RunInfo

    try:
        with torch.serialization.safe_globals([RunInfo]):
            return torch.load(path, weights_only=True)
    except Exception:
        return {}


def _load_also_getattr(path):
    from labs_utils.capstone import RunInfo

    with torch.serialization.safe_globals([RunInfo, getattr]):  # "the other file asked for getattr"
        return torch.load(path, weights_only=True)


def _load_model_only(path):
    from labs_utils.capstone import RunInfo

    with torch.serialization.safe_globals([RunInfo]):
        return torch.load(path, weights_only=True)["model"]


def _load_pair(path):
    from labs_utils.capstone import RunInfo

    with torch.serialization.safe_globals([(RunInfo, "labs_utils.capstone.RunInfo")]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _save_direct(obj, path):
    torch.save(obj, path)


def _save_temp_elsewhere(obj, path):
    tmp = Path(tempfile.gettempdir()) / f"{Path(path).name}.partial"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_bytes_then_overwrite(obj, path):
    buf = io.BytesIO()
    torch.save(obj, buf)  # a pickling error happens here, before the file is touched
    Path(path).write_bytes(buf.getvalue())  # but this truncates last.pth, then writes


def _save_with_backup(obj, path):
    path = Path(path)
    backup = path.with_name(path.name + ".bak")
    if path.exists():
        shutil.copy2(path, backup)
    try:
        torch.save(obj, path)
    except BaseException:
        if backup.exists():
            shutil.copy2(backup, path)  # never runs when the process is killed
        raise
    finally:
        backup.unlink(missing_ok=True)


def _save_remove_then_rename(obj, path):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # os.rename will not overwrite on Windows, so make room
        path.unlink(missing_ok=True)
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_temp_then_copy(obj, path):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        shutil.copyfile(tmp, path)
    finally:
        os.unlink(tmp)


def _save_no_fsync(obj, path):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _save_no_cleanup(obj, path):
    tmp = Path(path).with_suffix(".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save_swallowing(obj, path):
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)


def _save_labs_utils(obj, path):
    from labs_utils.toolkit import save_checkpoint

    save_checkpoint(obj, path)


def _save_named_temporary(obj, path):
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
        try:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def _save_mkstemp_rename(obj, path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


WRONG = {
    "capstone_save_for_serving": [
        (_save_whole, "whole model"),
        (_save_params_only, "detach"),
        (_save_method, "call it"),
        (_save_wrapped, "state_dict itself"),
        (_save_params_detached, "buffers"),
        (_save_half, "float16"),
        (_save_numpy, "numpy"),
        (_save_other_model, "model you were given"),
        (_save_keep_vars, "require grad"),
        (_save_safetensors, "safetensors"),
    ],
    "capstone_save_for_resume": [
        (_save_model_only, "optimizer"),
        (_save_no_scheduler, "scheduler"),
        (_save_wrong_optimizer_state, "differs"),
        (_save_param_groups_only, "param_groups alone"),
        (_save_optimizer_object, "optimizer object"),
        (_save_last_lr, "get_last_lr"),
        (_save_lr_scheduler_key, "'lr_scheduler'"),
        (_save_parameters_only_model, "buffers"),
        (_save_next_epoch, "epoch you were given"),
        (_save_torch_version, "TorchVersion"),
        (_save_list, "one dict"),
    ],
    "capstone_load_ddp_weights": [
        (_load_strict, "module."),
        (_load_non_strict, "strict=False hides"),
        (_load_stripped_non_strict, "strictly"),
        (_load_positional_false, "strictly"),
        (_load_into_data_parallel, "plain net"),
        (_load_slice_every_key, "plain file"),
        (_load_returns_result, "_IncompatibleKeys"),
        (_load_only_ddp_files, "was not loaded"),
    ],
    "capstone_load_gpu_weights": [
        (_load_gpu_default, "map_location"),
        (_load_gpu_then_cuda, "moves the model to the gpu"),
        (_load_gpu_cuda_prefix_dict, "'cuda:0'"),
        (_load_gpu_cpu_after, "too late"),
        (_load_gpu_default_device, "too late"),
        (_load_gpu_map_cuda, "map_location='cpu'"),
        (_load_gpu_returns_state, "SimpleModel"),
        (_load_gpu_device_values, "must be strings"),
    ],
    "capstone_load_safely": [
        (_load_unsafe, "marker"),
        (_load_default, "RunInfo"),
        (_load_process_wide, "for this one load"),
        (_load_by_name, "not strings"),
        (_load_fallback, "ran its payload"),
        (_load_then_validate, "too late"),
        (_load_swallow, "raise"),
        (_load_also_getattr, "also lets through getattr"),
        (_load_model_only, "return what the file holds"),
    ],
    "capstone_save_atomically": [
        (_save_direct, "in place"),
        (_save_temp_elsewhere, "another folder"),
        (_save_bytes_then_overwrite, "serialising into memory"),
        (_save_with_backup, "backup"),
        (_save_remove_then_rename, "no last.pth at all"),
        (_save_temp_then_copy, "copying"),
        (_save_no_fsync, "fsync"),
        (_save_no_cleanup, "temporary file behind"),
        (_save_swallowing, "swallowed"),
        (_save_labs_utils, "labs_utils"),
    ],
}
RIGHT = {
    "capstone_save_for_serving": [_save_detached_copy, _save_with_helper],
    "capstone_save_for_resume": [_save_resume_deepcopy],
    "capstone_load_ddp_weights": [_load_normalize_keys, _load_removeprefix],
    "capstone_load_gpu_weights": [
        _load_gpu_device_at_run_time,
        _load_gpu_full_tag_dict,
        _load_gpu_lambda,
    ],
    "capstone_load_safely": [_load_pair],
    "capstone_save_atomically": [_save_named_temporary, _save_mkstemp_rename],
}
