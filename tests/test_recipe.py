"""The book's optimizer, schedule and EMA reproduce TensorFlow's definitions."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vwwtorch.training.module import VWWClassifier
from vwwtorch.training.rmsprop_tf import RMSpropTF
from vwwtorch.training.schedule import decay_steps, staircase_factor


def test_rmsprop_matches_hand_computed_tf_update():
    lr, rho, mu, eps, wd = 0.045, 0.9, 0.9, 1.0, 4e-5
    p0 = np.array([0.5, -1.0, 2.0])
    grads = [np.array([0.1, -0.2, 3.0]), np.array([-0.4, 0.05, 1.0]), np.array([0.0, 0.3, -2.0])]
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = RMSpropTF([param], lr=lr, decay=rho, momentum=mu, epsilon=eps, weight_decay=wd)
    # TF v1 RMSPropOptimizer: ms starts at 1, epsilon inside the sqrt, momentum on the scaled step.
    p, ms, mom = p0.copy(), np.ones(3), np.zeros(3)
    for g in grads:
        g_total = g + wd * p
        ms = rho * ms + (1 - rho) * g_total ** 2
        mom = mu * mom + lr * g_total / np.sqrt(ms + eps)
        p = p - mom
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(param.detach().numpy(), p, rtol=1e-12, atol=1e-14)


def test_rmsprop_differs_from_pytorch_rmsprop():
    """Guard against "simplifying" to torch.optim.RMSprop: with eps=1 the updates differ a lot."""
    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    ours = RMSpropTF([a], lr=0.1, decay=0.9, momentum=0.0, epsilon=1.0)
    theirs = torch.optim.RMSprop([b], lr=0.1, alpha=0.9, momentum=0.0, eps=1.0)
    a.grad = torch.tensor([2.0])
    b.grad = torch.tensor([2.0])
    ours.step()
    theirs.step()
    assert a.item() == pytest.approx(1 - 0.1 * 2 / math.sqrt(0.9 + 0.1 * 4 + 1.0))
    assert abs(a.item() - b.item()) > 0.005  # 0.8681 vs 0.8775


def test_staircase_schedule_formula():
    steps = decay_steps(num_train_images=82783, global_batch_size=96, epochs_per_decay=2.5)
    assert steps == int(82783 * 2.5 / 96) == 2155
    for step in [0, 1, steps - 1, steps, steps + 1, 10 * steps + 3]:
        assert staircase_factor(step, steps, 0.98) == pytest.approx(0.98 ** (step // steps))


def test_module_scheduler_and_weight_decay_groups():
    module = VWWClassifier()
    # What the recipe asks of its data (`TrainingData`): 10 steps/epoch.
    datamodule = SimpleNamespace(batch_size=96, num_train_images=lambda: 960, train_labels=lambda: None,
                                 random_train_inputs=True)
    module._trainer = SimpleNamespace(datamodule=datamodule, world_size=1, accumulate_grad_batches=1)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 4e-5 and plain["weight_decay"] == 0.0
    convs = [m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d)]
    regular = {id(m.weight) for m in convs if m.groups == 1}
    assert {id(p) for p in decayed["params"]} == regular  # depthwise, BN and biases are not decayed
    lrs = []
    for _ in range(60):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.045 * 0.98 ** (s // 25) for s in range(60)]  # int(960 * 2.5 / 96) = 25
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def tf_ema_decay(decay: float, num_updates: int) -> float:
    """TensorFlow's ExponentialMovingAverage(decay, num_updates): min(decay, (1 + n) / (10 + n))."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def test_ema_decay_warms_up_then_settles_at_the_configured_decay():
    """A 1 then 0s: after the first update (a copy), each update multiplies the average by its decay,
    (1 + n) / (10 + n) with n the updates so far (2/11 at the second), and the configured decay once
    that exceeds it."""
    from torch.optim.swa_utils import AveragedModel

    from vwwtorch.training.ema import tf_ema_multi_avg_fn

    net = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(net, multi_avg_fn=tf_ema_multi_avg_fn(0.9999), use_buffers=True)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update_parameters(net)                       # first update copies: 1
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema.update_parameters(net)                       # n = 1 update so far: decay (1+1)/(10+1)
    assert ema.module.weight.item() == pytest.approx(2 / 11, rel=1e-6)
    ema.n_averaged.fill_(10 ** 7)                    # far into training: the decay is capped at 0.9999
    before = ema.module.weight.item()
    ema.update_parameters(net)
    assert ema.module.weight.item() == pytest.approx(before * 0.9999, rel=1e-6)


def test_ema_average_follows_tf_formula():
    from torch.optim.swa_utils import AveragedModel

    from vwwtorch.training.ema import tf_ema_multi_avg_fn

    net = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(net, multi_avg_fn=tf_ema_multi_avg_fn(0.9999), use_buffers=True)
    expected = None
    for step, value in enumerate([1.0, 3.0, -2.0, 5.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update_parameters(net)
        # First update copies; update n (n = updates so far) uses decay min(0.9999, (1+n)/(10+n)).
        expected = value if expected is None else expected * tf_ema_decay(0.9999, step) + value * (1 - tf_ema_decay(0.9999, step))
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)


def test_ema_averages_batchnorm_statistics_and_copies_its_counter():
    from torch.optim.swa_utils import AveragedModel

    from vwwtorch.training.ema import tf_ema_multi_avg_fn

    bn = torch.nn.BatchNorm1d(2)
    ema = AveragedModel(bn, multi_avg_fn=tf_ema_multi_avg_fn(0.9999), use_buffers=True)
    ema.update_parameters(bn)  # the first update copies
    with torch.no_grad():
        bn.running_mean.fill_(4.0)
        bn.num_batches_tracked.fill_(7)
    ema.update_parameters(bn)
    d = tf_ema_decay(0.9999, 1)
    assert torch.allclose(ema.module.running_mean, torch.full((2,), 4.0 * (1 - d)))
    assert ema.module.num_batches_tracked.item() == 7
