"""The built-in dataset: deterministic, balanced, and not solvable by a linear model."""

import numpy as np
import torch

from vwwtorch.data.format import open_split, read_meta
from vwwtorch.data.synthetic import render_scene, render_split


def test_deterministic_by_seed_and_split():
    a = render_scene(seed=3, split="train", index=7, person=True)
    assert np.array_equal(a, render_scene(seed=3, split="train", index=7, person=True))
    assert not np.array_equal(a, render_scene(seed=4, split="train", index=7, person=True))
    assert not np.array_equal(a, render_scene(seed=3, split="val", index=7, person=True))


def test_written_dataset_is_balanced_and_readable(synthetic_small):
    meta = read_meta(synthetic_small)
    assert meta["classes"] == ["no_person", "person"]
    assert meta["splits"]["train"]["per_class"] == {"no_person": 3000, "person": 3000}
    split = open_split(synthetic_small, "val", meta)
    assert split.images.shape == (400, 128, 128, 1) and split.images.dtype == np.uint8


def test_linear_model_does_not_solve_it():
    """Logistic regression on pixels (well fitted on 3000 scenes) stays far from the CNN's >= 95%."""
    x_train, y_train = render_split(seed=5, split="train", count=3000)
    x_val, y_val = render_split(seed=5, split="val", count=1000)

    def features(x):  # 64x64 pixels, standardised
        t = torch.nn.functional.avg_pool2d(torch.from_numpy(x).float().permute(0, 3, 1, 2), 2).flatten(1)
        return (t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-6)

    xt, xv = features(x_train), features(x_val)
    yt, yv = torch.from_numpy(y_train), torch.from_numpy(y_val)
    torch.manual_seed(0)
    linear = torch.nn.Linear(xt.shape[1], 2)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xt), yt) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    train_acc = (linear(xt).argmax(1) == yt).float().mean().item()
    val_acc = (linear(xv).argmax(1) == yv).float().mean().item()
    assert train_acc > 0.7  # it did fit the training set...
    assert val_acc < 0.7, val_acc  # ...but does not generalise
