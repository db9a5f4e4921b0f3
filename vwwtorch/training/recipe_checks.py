"""The recipe's numbers and choices, checked when the module is built: a value outside its range is
a flag mistake (one line), not a crash mid-training."""

from __future__ import annotations

from vwwtorch.plumbing.errors import UserError

# Each recipe number with the range it must lie in: (low, high, low inclusive, high inclusive).
RECIPE_RANGES = {
    "learning_rate": (0.0, float("inf"), True, False),
    "lr_decay_factor": (0.0, 1.0, False, True),
    "epochs_per_decay": (0.0, float("inf"), False, False),
    "rmsprop_decay": (0.0, 1.0, True, False),
    "momentum": (0.0, 1.0, True, False),
    "epsilon": (0.0, float("inf"), False, False),
    "weight_decay": (0.0, float("inf"), True, False),
    "label_smoothing": (0.0, 1.0, True, False),
    "dropout": (0.0, 1.0, True, False),
    "bn_momentum": (0.0, 1.0, True, True),
    "image_log_every_n_steps": (0, float("inf"), True, False),
}


BATCH_NORM_MODES = ("auto", "train", "frozen")


def check_choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"--model.{name} must be one of {', '.join(allowed)}, got {value!r}")


def check_recipe(**values) -> None:
    for name, value in values.items():
        low, high, low_ok, high_ok = RECIPE_RANGES[name]
        inside = (value > low or (low_ok and value == low)) and (value < high or (high_ok and value == high))
        if not inside:  # also catches NaN
            left, right = "[" if low_ok else "(", "]" if high_ok else ")"
            raise UserError(f"--model.{name} must be in {left}{low:g}, {high:g}{right}, got {value}")
