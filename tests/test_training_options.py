"""Trainer and model options for speed: torch.compile, channels_last, bf16 by default on a GPU, and
the data module's device-dependent loader processes. Each must leave what is trained unchanged."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch
from conftest import write_dataset

from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.training import lightning_cli
from vwwtorch.training.module import VWWClassifier


def _fit(data_dir, root, **model_options) -> VWWClassifier:
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, dropout=0.0, bn_momentum=0.1, image_log_every_n_steps=0, **model_options)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=3, limit_val_batches=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=str(root))
    trainer.fit(model, VWWDataModule(str(data_dir), batch_size=8, num_workers=0, resolution=32))
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "data", n=24, size=48)
    return root


def _batch() -> torch.Tensor:
    return torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


# Training steps themselves are not compared: at initialisation MobileNet's gradients are so
# ill-conditioned that another kernel's rounding moves them by ~2%, and a few RMSProp steps amplify
# that. The forward pass (train-mode BatchNorm included) is compared instead, on the trained weights.

def test_compiled_training_runs_the_compiled_forward_and_saves_the_plain_model(tiny):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = _fit(tiny / "data", tiny / "compiled", compile=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the compiled forward never ran"
    assert not any("_orig_mod" in key for key in compiled.state_dict()), "checkpoints must hold the plain model"
    compiled.train()
    with torch.no_grad():
        torch.testing.assert_close(compiled._logits(_batch()), compiled.model(_batch()), atol=1e-4, rtol=1e-4)
    assert VWWClassifier(resolution=32)._compiled is None, "compiling is opt-in"


def test_channels_last_off_computes_the_same_model(tiny):
    trained = _fit(tiny / "data", tiny / "channels_last")
    plain = VWWClassifier(resolution=32, dropout=0.0, channels_last=False)
    plain.load_state_dict(trained.state_dict())
    assert trained.memory_format == torch.channels_last and plain.memory_format == torch.contiguous_format
    first_conv = next(m for m in plain.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous()
    for mode in ("eval", "train"):
        getattr(trained, mode)(), getattr(plain, mode)()
        with torch.no_grad():
            torch.testing.assert_close(plain(_batch()), trained(_batch()), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("accelerator, cuda, bf16, expected", [
    ("auto", True, True, True), ("gpu", True, True, True), ("auto", True, False, False),
    ("auto", False, False, False), ("cpu", True, True, False),
])
def test_bf16_autocast_is_the_default_only_on_a_gpu_that_has_it(monkeypatch, accelerator, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert lightning_cli.bf16_gpu(accelerator) is expected


def test_loader_processes_default_to_none_on_the_cpu(tiny):
    data = VWWDataModule(str(tiny / "data"), resolution=32)
    assert data.train_dataloader().num_workers == 0 and data.val_dataloader().num_workers == 0
    assert VWWDataModule(str(tiny / "data"), resolution=32, num_workers=2).val_dataloader().num_workers == 2


def test_a_resident_split_gives_the_same_batches_as_reading_each_batch(tiny):
    """What a GPU run does when the split fits (gather on the device), shown on the CPU."""
    batches = {}
    for resident in (False, True):
        data = VWWDataModule(str(tiny / "data"), batch_size=8, resolution=32, resident=resident)
        raw = list(data.train_dataloader())
        assert ("indices" in raw[0]) is resident and ("images" in raw[0]) is not resident
        batches[resident] = [data.augment(batch) for batch in raw]
    assert len(batches[True]) == 3
    for (x, y), (x_resident, y_resident) in zip(batches[False], batches[True]):
        assert torch.equal(x, x_resident) and torch.equal(y, y_resident)


def test_compile_on_a_cpu_without_a_compiler_is_one_line_before_training(tiny, tmp_path, monkeypatch, capfd):
    from cli_asserts import assert_one_line_error

    from vwwtorch.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))      # no g++ / c++ to be found
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--data.data_dir", str(tiny / "data"), "--model.resolution", "32", "--model.compile", "true",
                 "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                 "--trainer.max_epochs", "1", "--checkpoint.dirpath", str(tmp_path / "ckpt")])
    assert_one_line_error(code, capfd.readouterr().err, "C++ compiler", exit_code=2)
    assert not (tmp_path / "ckpt").exists()
