"""Checks of notebooks/15_resume_mid_epoch_and_ema.ipynb, beyond tests/checks/test_framework.py (which
runs every listed right and wrong answer through its check): each rejected answer really ends elsewhere
(the check's hint is not about a harmless difference), and the check's cases do break the mistakes they
are meant for."""

import copy
import math

import pytest
import torch

from labs_utils.checks import check, fixtures, nb15, same
from tests.checks import answers_nb15

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)


def test_a_crashing_answer_is_reported():
    def broken(checkpoint, model, optimizer, ema, loader):
        return checkpoint["no_such_key"]

    r = check.resume_mid_epoch(broken)
    assert r.status == "wrong" and "KeyError" in r.message


def _finish(resume, stop_at, workers=0):
    """Crash the check's run at ``stop_at``, resume with ``resume`` and finish: (log, model, ema) vs reference."""
    ref_log, ref_model, ref_ema = nb15._reference(workers)
    ref_log = list(ref_log)
    ckpt, log = nb15._crashed_run(stop_at, workers)
    ckpt, log = fixtures.through_file(ckpt), list(log)  # copies: the run is cached
    model, optimizer, ema, loader = nb15._objects(99, workers)
    start = resume(ckpt, model, optimizer, ema, loader)
    nb15._train(
        model,
        optimizer,
        ema,
        loader,
        int(start if start is not None else stop_at[0]),
        log,
    )
    return (
        log == ref_log,
        same(ref_model, model.state_dict()),
        same(ref_ema, ema.state_dict()),
    )


@pytest.mark.parametrize("stop_at,workers", nb15._CASES)
def test_the_right_resume_is_exact_in_every_case(stop_at, workers):
    assert _finish(answers_nb15._right_resume, stop_at, workers) == (True, True, True)
    assert _finish(answers_nb15._rng_first_by_hand, stop_at, workers) == (
        True,
        True,
        True,
    )


@pytest.mark.parametrize(
    "resume",
    [
        answers_nb15._no_loader_state,
        answers_nb15._new_loader,
        answers_nb15._next_epoch,
        answers_nb15._no_ema,
        answers_nb15._new_average,
        answers_nb15._no_rng,
        answers_nb15._peeks_a_batch,
        answers_nb15._forward_after,
    ],
)
def test_every_rejected_resume_really_ends_elsewhere(resume):
    """On the check's first case (mid-epoch), each rejected answer changes the batches, the model or the EMA."""
    torch.manual_seed(0)
    assert _finish(resume, nb15._CASES[0][0]) != (True, True, True)


def test_the_cases_cover_start_middle_last_step_boundary_and_workers():
    stops = {stop for stop, _ in nb15._CASES}
    assert (
        (0, 0) in stops and (0, nb15._STEPS) in stops and any(0 < s < nb15._STEPS for _, s in stops)
    )
    # an epoch boundary: the loader's epoch has ended
    assert any(e > 0 and s == 0 for e, s in stops)
    assert any(workers > 0 for _, workers in nb15._CASES)


def test_a_shared_generator_is_what_the_two_generator_loader_avoids():
    """The notebook's anomaly, on the check's data: with one generator for the order and iter()'s seed draw,
    the epoch after a mid-epoch resume gets another order; the check's two-generator loader does not."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    def shared(seed):
        with pytest.warns(UserWarning, match="set_vital"):
            return StatefulDataLoader(
                nb15._data(),
                batch_size=nb15._BATCH,
                shuffle=True,
                generator=torch.Generator().manual_seed(seed),
            )

    def two(seed):
        return nb15._objects(seed, 0)[3]

    for make, later_same in ((shared, False), (two, True)):
        uninterrupted = make(0)
        epochs = [[b[2].tolist() for b in uninterrupted] for _ in range(2)]
        crashed = make(0)
        batches = iter(crashed)
        next(batches)
        resumed = make(5)
        resumed.load_state_dict(crashed.state_dict())
        assert [b[2].tolist() for b in resumed] == epochs[0][
            1:
        ]  # the rest of the epoch: right in both
        assert ([b[2].tolist() for b in resumed] == epochs[1]) is later_same


def test_ema_weights_aliasing_is_real():
    """ema.module.state_dict() is rejected because the next update really changes the returned dict."""
    _, ema = nb15._trained_average(nb15._bn_model, True, seed=0)
    model, _ = nb15._trained_average(nb15._bn_model, True, seed=1)
    out = ema.module.state_dict()
    before = copy.deepcopy(out)
    ema.update_parameters(model)
    assert not all(torch.equal(v, before[k]) for k, v in out.items())


def test_ema_weights_submodule_named_module_breaks_replace():
    _, ema = nb15._trained_average(nb15._has_module, True, seed=0)
    assert "module.module.weight" in ema.state_dict()
    assert "weight" in answers_nb15._replace_everywhere(ema) and "weight" in answers_nb15._lstrip(
        ema
    )
    assert "module.weight" in answers_nb15._removeprefix(ema)


def _scaled_rates(answer, name, make_scheduler, factor):
    model, optimizer, scheduler = nb15._scheduled(make_scheduler)
    for _ in range(nb15._BEFORE):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
    ckpt = fixtures.through_file(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    )
    plan = nb15._rates(optimizer, scheduler, nb15._AFTER)
    _, optimizer2, scheduler2 = nb15._scheduled(make_scheduler, lrs=(0.3, 0.03))
    answer(ckpt, optimizer2, scheduler2, factor)
    got = nb15._rates(optimizer2, scheduler2, nb15._AFTER)
    return all(
        math.isclose(g, factor * p, rel_tol=1e-9)
        for rg, rp in zip(got, plan)
        for g, p in zip(rg, rp)
    )


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize(
    "answer",
    [
        answers_nb15._scale_before_load,
        answers_nb15._group_lr_only,
        answers_nb15._base_lrs_only,
        answers_nb15._first_group_only,
        answers_nb15._set_to_factor,
        answers_nb15._no_scheduler_state,
        answers_nb15._steps_to_apply,
        answers_nb15._own_optimizer,
    ],
)
def test_every_rejected_scaling_gives_other_rates(answer):
    results = [_scaled_rates(answer, name, make, 0.1) for name, make in nb15._SCHEDULERS]
    assert not all(results)


def test_scaling_only_the_current_rate_is_right_for_recursive_schedulers_and_wrong_for_lambdalr():
    by_name = {
        name: _scaled_rates(answers_nb15._group_lr_only, name, make, 0.1)
        for name, make in nb15._SCHEDULERS
    }
    assert by_name == {
        "CosineAnnealingLR": True,
        "LambdaLR": False,
        "StepLR": True,
        "ExponentialLR": True,
    }
    assert all(
        _scaled_rates(answers_nb15._right_scaled, name, make, 0.5)
        for name, make in nb15._SCHEDULERS
    )
