"""Quantization-aware training: TFLite's integer arithmetic, the simulated int8 network, and an export
that is exactly the network QAT trained.

The references are independent of the code under test: gemmlowp's fixed-point routines written out
literally on Python integers, and TFLite Micro itself (the `tflite_micro` runtime) running the
exported file, cut after the classifier so that its int8 logits are compared, not only the top class.
Mutations of the simulation's rounding must break the equality.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from vwwtorch.cli import main
from vwwtorch.contract import int8_arithmetic
from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.data.transforms import Augmentation
from vwwtorch.training.checkpoint import load_classifier
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.module import VWWClassifier

RESOLUTION = 64          # a 2x2 map before the average pool, whose rounding then matters
PARITY_IMAGES = 300


# --- gemmlowp, literally -------------------------------------------------------------------------

def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _doubling_high_mul(a: int, b: int) -> int:
    if a == b == -2 ** 31:
        return 2 ** 31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def _rounding_divide(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def _requantize(x: int, multiplier: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _rounding_divide(_doubling_high_mul(x * (1 << left), multiplier), right)


def test_requantization_is_gemmlowps_on_every_sign_and_tie():
    rng = random.Random(0)
    xs, ms, ss = [], [], []
    for _ in range(50_000):
        shift = rng.randint(-20, 2)
        # Ties of the final division are frequent: multiples of half its divisor, either sign.
        x = rng.choice([rng.randint(-2 ** 22, 2 ** 22), rng.randint(-64, 64) * (1 << max(0, -shift - 1)),
                        0, 1, -1, 2 ** 20, -(2 ** 20)])
        multiplier = rng.choice([rng.randint(1 << 30, (1 << 31) - 1), 1 << 30, (1 << 31) - 1, 0])
        xs.append(x), ms.append(multiplier), ss.append(shift)
    got = int8_arithmetic.multiply_by_quantized_multiplier(torch.tensor(xs), torch.tensor(ms), torch.tensor(ss))
    expected = [_requantize(x, m, s) for x, m, s in zip(xs, ms, ss)]
    assert got.tolist() == expected


def test_average_pool_rounds_half_away_from_zero():
    totals = torch.arange(-200, 201)
    for count in (1, 2, 9, 36):
        expected = [_trunc_div(t + count // 2, count) if t > 0 else _trunc_div(t - count // 2, count)
                    for t in totals.tolist()]
        assert int8_arithmetic.average_pool_round(totals, count).tolist() == expected


def test_asymmetric_parameters_hold_zero_and_give_back_a_source_quantization():
    scale, zero_point = int8_arithmetic.asymmetric_parameters(0.0, 6.0)
    assert (zero_point, scale) == (-128, pytest.approx(6 / 255))
    assert int8_arithmetic.asymmetric_parameters(-1.0, 1.0) == (pytest.approx(1 / 127.5), -1)  # the input's
    for scale, zero_point in ((0.0235294122248888, -128), (0.012518751434981823, -1), (0.014636218547821045, -5)):
        low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
        assert int8_arithmetic.asymmetric_parameters(low, high) == (pytest.approx(scale, rel=1e-7), zero_point)


# --- a QAT model, exported --------------------------------------------------------------------------

def fit_qat(data_dir, root, steps: int = 40, **model_args) -> VWWClassifier:
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=RESOLUTION, class_names=["no_person", "person"], qat=True,
                          image_log_every_n_steps=0, bn_momentum=0.1, **model_args)
    data = VWWDataModule(data_dir, batch_size=32, num_workers=0, resolution=RESOLUTION,
                         augmentation=Augmentation(crop_area=(0.5, 1.0)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         use_distributed_sampler=False, callbacks=[TFWeightEMA()], default_root_dir=str(root))
    trainer.fit(model, data)
    trainer.save_checkpoint(root / "qat.ckpt")
    return model


@pytest.fixture(scope="module")
def exported(synthetic_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    fit_qat(synthetic_small, root)
    code = main(["export", "--ckpt", str(root / "qat.ckpt"), "--data", synthetic_small, "--out", str(root / "export"),
                 "--num-calibration", "8", "--num-parity", str(PARITY_IMAGES)])
    assert code == 0
    return root


def parity_images(data_dir):
    from vwwtorch.bridge.calibration import load_eval_images

    return load_eval_images(data_dir, "val", PARITY_IMAGES, 1, RESOLUTION, progress=False)


def up_to_the_logits(model: bytes) -> bytes:
    """The int8 model cut after its classifier: its output is the int8 logits."""
    from vwwtorch.contract.tflite import indices, pack, read_tflite, unpack

    info = read_tflite(model)
    last = max(i for i, op in enumerate(info.ops) if op in ("CONV_2D", "FULLY_CONNECTED"))
    tree = unpack(model)
    graph = tree.subgraphs[0]
    graph.operators = graph.operators[:last + 1]
    graph.outputs = np.array([indices(graph.operators[last].outputs)[0]], dtype=np.int32)
    return pack(tree, len(model))


def tflm_logits(model_file, pixels) -> np.ndarray:
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.contract.tflm import run_tflm

    model = model_file.read_bytes()
    logits, _ = run_tflm(up_to_the_logits(model), TFLiteModel(model).model_inputs(pixels))
    return logits.reshape(len(pixels), -1).astype(np.int64)


def simulated_logits(ckpt, data) -> np.ndarray:
    module = load_classifier(ckpt)
    return module.int8.integer_outputs(module.model, torch.from_numpy(data.images).permute(0, 3, 1, 2)).numpy()


def test_export_is_the_simulated_network_and_the_gate_says_so(exported, synthetic_small):
    report = json.loads((exported / "export" / "parity.json").read_text())
    assert report["verified"] and report["data"]["int8_ranges"].startswith("the int8 network of the quantization")
    kept = next(s for s in report["seams"] if s["key"] == "kept_quantization")
    assert kept["title"] == "QAT simulation vs TFLite int8" and kept["passed"]
    assert kept["metrics"]["images"] == PARITY_IMAGES and kept["metrics"]["max_lsb_diff"] <= 1

    data = parity_images(synthetic_small)
    expected = simulated_logits(exported / "qat.ckpt", data)
    assert len(np.unique(expected, axis=0)) > PARITY_IMAGES // 4   # the logits vary: a real comparison
    np.testing.assert_array_equal(tflm_logits(exported / "export" / "model_int8.tflite", data.pixels), expected)


def _ties_to_even(x, exponent):
    """What a float simulation does (torch.round, numpy.round): ties to the even neighbour."""
    return torch.round(x.to(torch.float64) / (1 << exponent).to(torch.float64)).to(x.dtype)


def _truncating_pool(total, count):
    return torch.div(total, count, rounding_mode="trunc")


@pytest.mark.parametrize("name, mutation", [("rounding_divide_by_pot", _ties_to_even),
                                            ("average_pool_round", _truncating_pool)])
def test_a_simulation_that_rounds_otherwise_no_longer_matches_tflm(exported, synthetic_small, monkeypatch, name,
                                                                    mutation):
    data = parity_images(synthetic_small)
    device = tflm_logits(exported / "export" / "model_int8.tflite", data.pixels)
    module = "vwwtorch.models.int8_simulation" if name == "average_pool_round" else "vwwtorch.contract.int8_arithmetic"
    monkeypatch.setattr(f"{module}.{name}", mutation)
    assert (simulated_logits(exported / "qat.ckpt", data) != device).any()


def test_qat_from_an_imported_model_starts_as_its_source(exported, synthetic_small, tmp_path, capsys):
    """Import the exported int8 file, start QAT from it: before any step the simulation is the file."""
    from vwwtorch.contract.litert import TFLiteModel
    from vwwtorch.contract.tflm import run_tflm
    from vwwtorch.models.int8_simulation import softmax_int8

    source = exported / "export" / "model_int8.tflite"
    assert main(["import", str(source), "--out", str(tmp_path / "imported.ckpt")]) == 0
    model = VWWClassifier(resolution=RESOLUTION, class_names=["no_person", "person"], qat=True,
                          init_from=str(tmp_path / "imported.ckpt"))
    model.setup("fit")
    assert model.int8.ready
    data = parity_images(synthetic_small)
    with torch.no_grad():
        probs = softmax_int8(model.eval()(torch.from_numpy(data.images).permute(0, 3, 1, 2)))
    device, _ = run_tflm(source.read_bytes(), TFLiteModel(source.read_bytes()).model_inputs(data.pixels))
    np.testing.assert_array_equal(probs.numpy(), device.astype(np.int64))


@pytest.mark.learning
def test_quantization_aware_training_learns_from_scratch(synthetic_small, tmp_path):
    """From random weights, with BatchNorm training and folded as QAT does it: the int8 network itself
    (validation runs it in TFLM's integer arithmetic) goes from chance to >= 0.9, like float training
    (tests/test_training.py, same data, recipe and margins: about 0.95 reached, stopped at 0.9, a bound
    of 10 epochs)."""
    from pytorch_lightning.callbacks import EarlyStopping

    pl.seed_everything(0)
    model = VWWClassifier(resolution=64, bn_momentum=0.1, learning_rate=0.15, image_log_every_n_steps=0, qat=True)
    data = VWWDataModule(synthetic_small, batch_size=64, num_workers=0, resolution=64,
                         augmentation=Augmentation(crop_area=(0.5, 1.0)))
    reached = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=0.9, patience=10)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=10, num_sanity_val_steps=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         use_distributed_sampler=False, default_root_dir=str(tmp_path),
                         callbacks=[TFWeightEMA(0.9999), reached])
    trainer.fit(model, data)
    final = float(trainer.callback_metrics["val/acc"])
    assert model.int8.ready
    assert final >= 0.9, f"int8 val/acc {final:.3f} after {trainer.current_epoch} epochs (bound: 10)"
