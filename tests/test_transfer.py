"""Transfer learning: init_from, two-stage fine-tuning, the bottleneck cache, class weights."""

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from cli_asserts import assert_one_line_error
from conftest import write_dataset
from pytorch_lightning.callbacks import Callback

from vwwtorch.cli import main
from vwwtorch.plumbing.errors import UserError
from vwwtorch.data.datamodule import VWWDataModule
from vwwtorch.data.format import DatasetWriter
from vwwtorch.data.transforms import Augmentation
from vwwtorch.training.bottleneck import BottleneckTraining, backbone_key
from vwwtorch.training.checkpoint import load_classifier, read_checkpoint
from vwwtorch.training.ema import TFWeightEMA
from vwwtorch.training.finetune import TwoStageFinetuning
from vwwtorch.training.module import VWWClassifier

REPO = Path(__file__).resolve().parents[1]
STILL = Augmentation(crop_area=(1, 1), crop_aspect=(1, 1), hflip=False, brightness=0, contrast=0)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine: one thread is faster here
    yield
    torch.set_num_threads(threads)


def trainer(root, callbacks=(), **kwargs):
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, use_distributed_sampler=False, num_sanity_val_steps=0,
                   default_root_dir=str(root))
    return pl.Trainer(callbacks=list(callbacks), **{**options, **kwargs})


def make_checkpoint(path: Path, data_dir: str, width: float = 0.25, seed: int = 0, classes=("a", "b")) -> Path:
    """A real Lightning checkpoint (EMA weights in its state_dict) after two training steps."""
    pl.seed_everything(seed, verbose=False)
    model = VWWClassifier(width=width, resolution=32, num_classes=len(classes), class_names=list(classes),
                          image_log_every_n_steps=0, bn_momentum=0.1)
    data = VWWDataModule(data_dir, batch_size=8, num_workers=0, resolution=32, augmentation=STILL)
    t = trainer(path.parent, [TFWeightEMA()], max_steps=2, limit_val_batches=1)
    t.fit(model, data)
    t.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    two = write_dataset(root / "two", n=32, size=36, classes=("a", "b"))
    three = write_dataset(root / "three", n=24, size=36, classes=("x", "y", "z"))
    return SimpleNamespace(root=root, two=two, three=three,
                           ckpt=make_checkpoint(root / "a.ckpt", two),
                           other=make_checkpoint(root / "b.ckpt", two, seed=1),
                           wide=make_checkpoint(root / "wide.ckpt", two, width=0.5))


def backbone_of(checkpoint_path):
    state = read_checkpoint(checkpoint_path)["state_dict"]
    return {k[len("model.features."):]: v for k, v in state.items() if k.startswith("model.features.")}


def test_init_from_loads_the_backbone_and_makes_a_new_classifier(datasets):
    # 3 classes from a 2-class checkpoint, and another resolution (64 vs 32).
    model = VWWClassifier(resolution=64, num_classes=3, class_names=["x", "y", "z"], init_from=str(datasets.ckpt))
    fresh = {k: v.clone() for k, v in model.model.features.state_dict().items()}
    model.setup("fit")
    saved = backbone_of(datasets.ckpt)
    loaded = model.model.features.state_dict()
    assert saved.keys() == loaded.keys() and len(saved) > 100
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    assert any(not torch.equal(fresh[k], saved[k]) for k in saved if saved[k].is_floating_point())
    assert model.model.classifier.weight.shape[0] == 3


def test_init_from_keeps_the_classifier_when_the_task_is_the_same(datasets):
    saved = read_checkpoint(datasets.ckpt)["state_dict"]["model.classifier.weight"]

    def head(**kwargs):
        options = dict(resolution=32, num_classes=2, class_names=["a", "b"], init_from=str(datasets.ckpt))
        model = VWWClassifier(**{**options, **kwargs})
        model.setup("fit")
        return model.model.classifier.weight

    assert torch.equal(head(), saved)                              # same classes, same order: kept
    assert not torch.equal(head(init_head="new"), saved)           # asked for a new one
    assert not torch.equal(head(class_names=["b", "a"]), saved)    # another task with two classes
    assert torch.equal(head(init_head="keep"), saved)
    with pytest.raises(UserError, match="init_head keep needs the checkpoint's classifier, but its classes a, b"):
        head(class_names=["b", "a"], init_head="keep")


def folded_like_an_int8_import(path: Path, trained: Path) -> Path:
    """What `vwwtorch import` makes of an int8 file: the trained checkpoint's BatchNorm folded into
    its convolutions (weights w * gamma / sqrt(var + eps), biases as beta), BatchNorm the identity."""
    from vwwtorch.training.foreign.importer import Imported, build_checkpoint
    from vwwtorch.training.foreign.weights import LayerWeights

    model = load_classifier(trained).model
    layers = []
    for i, layer in enumerate(model.conv_layers()):
        bn = layer.bn
        factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        weight = (layer.conv.weight.detach() * factor.view(-1, 1, 1, 1)).numpy()
        layers.append(LayerWeights(f"layer {i}", weight, (bn.bias - bn.running_mean * factor).detach().numpy()))
    layers.append(LayerWeights("classifier", model.classifier.weight.detach().numpy(),
                               model.classifier.bias.detach().numpy()))
    torch.save(build_checkpoint(Imported(model.arch(), layers, "source.tflite", "0" * 64), ["a", "b"]), path)
    return path


@pytest.mark.parametrize("batch_norm", ["auto", "train"])
def test_a_step_at_learning_rate_zero_keeps_an_imported_models_function(datasets, tmp_path, batch_norm):
    """Fine-tuning starts from the function the imported model computes. Its BatchNorm is the identity
    around folded weights, which it is only in inference mode: trained in training mode ("train", the
    mutation) one step that moves no weight already makes it another function."""
    source = folded_like_an_int8_import(tmp_path / "imported.ckpt", datasets.ckpt)
    x = torch.rand(32, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        before = load_classifier(source)(x)
        torch.testing.assert_close(before, load_classifier(datasets.ckpt)(x), rtol=1e-4, atol=1e-4)
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, num_classes=2, class_names=["a", "b"], init_from=str(source),
                          learning_rate=0.0, bn_momentum=0.01, batch_norm=batch_norm, image_log_every_n_steps=0)
    data = VWWDataModule(datasets.two, batch_size=16, num_workers=0, resolution=32, augmentation=STILL)
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, data)
    with torch.no_grad():
        after = model.eval()(x)
    change = (after - before).abs().max().item()
    if batch_norm == "auto":   # frozen: the running statistics stay the source's
        assert change < 1e-5, change
    else:
        assert change > 1e-4, change   # a hundred times the float tolerance above


def test_init_from_applies_only_when_fitting(datasets, tmp_path):
    model = VWWClassifier(resolution=32, num_classes=3, init_from=str(tmp_path / "gone.ckpt"))
    model.setup("validate")  # evaluating a fine-tuned model never needs the original checkpoint
    with pytest.raises(UserError, match="does not exist"):
        model.setup("fit")


def test_finetuned_checkpoint_loads_without_the_original(datasets, tmp_path):
    source = tmp_path / "source.ckpt"
    source.write_bytes(Path(datasets.ckpt).read_bytes())
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, num_classes=3, class_names=["x", "y", "z"], init_from=str(source),
                          image_log_every_n_steps=0)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=1)
    t.fit(model, VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32))
    t.save_checkpoint(tmp_path / "tuned.ckpt")
    source.unlink()
    reloaded = load_classifier(tmp_path / "tuned.ckpt")
    assert torch.equal(reloaded.model.features[5][1][0].weight, model.model.features[5][1][0].weight)


def test_init_from_with_another_width_is_one_clear_line(datasets, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's runs/ and bottleneck_cache/ are relative
    code = main(["fit", "--config", str(REPO / "configs" / "folder_transfer.yaml"),
                 "--model.init_from", str(datasets.wide), "--data.data_dir", datasets.three,
                 "--model.resolution", "32", "--data.num_workers", "0", "--trainer.logger", "false",
                 "--trainer.enable_progress_bar", "false"])
    assert_one_line_error(code, capsys.readouterr().err, "width=0.5 (configured 0.25)", "--model.width")


class Recorder(Callback):
    """What the first training batch of every epoch sees: trainable parameters, BN modes, learning rate."""

    def __init__(self):
        self.epochs = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            features = pl_module.model.features
            self.epochs[trainer.current_epoch] = {
                "grad": [all(p.requires_grad for p in block.parameters()) for block in features],
                "frozen": [not any(p.requires_grad for p in block.parameters()) for block in features],
                "bn_train": [m.training for m in features.modules() if isinstance(m, torch.nn.BatchNorm2d)],
                "head": pl_module.model.classifier.weight.requires_grad,
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "weights": {k: v.clone() for k, v in features.state_dict().items()},
            }


def test_two_stage_schedule_freezes_and_unfreezes_at_the_intended_epoch(datasets, tmp_path):
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, num_classes=3, init_from=str(datasets.ckpt), image_log_every_n_steps=0,
                          learning_rate=0.05, epochs_per_decay=1000, batch_norm="train")
    stages = TwoStageFinetuning(freeze_blocks=10, unfreeze_at_epoch=2, unfreeze_lr=0.002)
    recorder = Recorder()
    t = trainer(tmp_path, [stages, recorder], max_epochs=4, limit_train_batches=2, limit_val_batches=1)
    t.fit(model, VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32, augmentation=STILL))

    for epoch in (0, 1):  # stage 1: blocks 0-9 frozen (BatchNorm in inference mode), 10-13 and the head train
        seen = recorder.epochs[epoch]
        assert seen["frozen"] == [True] * 10 + [False] * 4, seen["frozen"]
        assert seen["grad"] == [False] * 10 + [True] * 4
        assert seen["head"] and seen["lr"] == pytest.approx(0.05)
        bn_per_block = [sum(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules()) for b in model.model.features]
        frozen_bn = sum(bn_per_block[:10])
        assert seen["bn_train"] == [False] * frozen_bn + [True] * (len(seen["bn_train"]) - frozen_bn)
    for epoch in (2, 3):  # stage 2: everything trains, at lr2
        seen = recorder.epochs[epoch]
        assert all(seen["grad"]) and all(seen["bn_train"]) and seen["head"]
        assert seen["lr"] == pytest.approx(0.002)
    # Frozen blocks (weights and BatchNorm statistics) did not move during stage 1; they do in stage 2.
    first, second = recorder.epochs[0]["weights"], recorder.epochs[2]["weights"]
    last = model.model.features.state_dict()
    frozen_names = [k for k in first if int(k.split(".")[0]) < 10]
    assert all(torch.equal(first[k], second[k]) for k in frozen_names)
    assert any(not torch.equal(first[k], last[k]) for k in frozen_names if first[k].is_floating_point())
    trained = [k for k in first if int(k.split(".")[0]) >= 10 and k.endswith("weight")]
    assert any(not torch.equal(first[k], second[k]) for k in trained)


def test_two_stage_refuses_more_blocks_than_the_backbone_has(datasets, tmp_path):
    model = VWWClassifier(resolution=32, num_classes=3, image_log_every_n_steps=0)
    t = trainer(tmp_path, [TwoStageFinetuning(freeze_blocks=15)], max_steps=1)
    with pytest.raises(UserError, match="more than the 14 blocks"):
        t.fit(model, VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32))


def bottleneck_run(tmp_path, datasets, ckpt, cache_dir, augmentation=STILL, epochs=2, **kwargs):
    pl.seed_everything(0, verbose=False)
    model = VWWClassifier(resolution=32, num_classes=3, init_from=str(ckpt), image_log_every_n_steps=0)
    callback = BottleneckTraining(cache_dir=str(cache_dir))
    data = VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32, augmentation=augmentation)
    extra = kwargs.pop("callbacks", [])
    trainer(tmp_path, [callback, *extra], max_epochs=epochs, **kwargs).fit(model, data)
    return model, callback


def test_bottleneck_cache_hits_on_the_second_run_and_changes_with_the_checkpoint(datasets, tmp_path):
    cache = tmp_path / "cache"
    n_train, n_val = 24, 24  # 3 batches of 8 per epoch each
    model, first = bottleneck_run(tmp_path, datasets, datasets.ckpt, cache)
    assert (first.misses, first.hits) == (n_train + n_val, n_train + n_val)  # epoch 2 reuses epoch 1
    assert [p.name for p in cache.iterdir()] == [first.key]
    # Only the classifier trained; the backbone is the checkpoint's, bit for bit.
    saved = backbone_of(datasets.ckpt)
    assert all(torch.equal(model.model.features.state_dict()[k], v) for k, v in saved.items())

    _, second = bottleneck_run(tmp_path, datasets, datasets.ckpt, cache)
    assert (second.misses, second.hits) == (0, 2 * (n_train + n_val)) and second.key == first.key

    _, other = bottleneck_run(tmp_path, datasets, datasets.other, cache, epochs=1)
    assert other.key != first.key and (other.misses, other.hits) == (n_train + n_val, 0)
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.key, other.key])


def test_cached_features_are_the_backbone_output(datasets, tmp_path):
    model = VWWClassifier(resolution=32, num_classes=3, init_from=str(datasets.ckpt))
    model.setup("fit")
    callback = BottleneckTraining(cache_dir=str(tmp_path / "cache"))
    data = VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32, augmentation=STILL)
    fake_trainer = SimpleNamespace(global_rank=0, current_epoch=0, datamodule=data)
    callback.on_fit_start(fake_trainer, model)
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    model.model.eval()
    expected = model.model.forward_features(x)
    model.model.train()
    first = callback.features(x, training=True)
    again = callback.features(x, training=True)
    assert (callback.misses, callback.hits) == (5, 5)
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(first, again)
    assert callback.key == backbone_key(model.model)


def test_distortions_disable_the_training_cache_with_a_warning(datasets, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, callback = bottleneck_run(tmp_path, datasets, datasets.ckpt, tmp_path / "cache",
                                     augmentation=Augmentation(), epochs=2)
    assert any("bottleneck cache disabled for training" in str(w.message) for w in caught)
    assert (callback.misses, callback.hits) == (24, 24)  # validation only: 24 images, twice


def imbalanced_dataset(root) -> str:
    writer = DatasetWriter(root, classes=["rare", "common"], image_size=(36, 36), channels=1,
                           provenance={"source": "test"})
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 18)
    for split in ("train", "val"):
        writer.write_split(split, rng.integers(0, 256, (24, 36, 36, 1), dtype=np.uint8), labels, np.arange(24))
    return str(writer.finish())


def test_class_weights_auto_is_inverse_frequency_in_a_smoothed_weighted_loss(tmp_path):
    data = VWWDataModule(imbalanced_dataset(tmp_path / "d"), batch_size=8, num_workers=0, resolution=32)
    data.setup("fit")
    model = VWWClassifier(resolution=32, class_weights="auto", label_smoothing=0.1, image_log_every_n_steps=0)
    model._trainer = SimpleNamespace(datamodule=data, global_step=0)
    model.setup("fit")
    assert model.loss_weights.tolist() == pytest.approx([24 / (2 * 6), 24 / (2 * 18)])  # [2.0, 0.667]
    x, y = torch.rand(6, 1, 32, 32) * 2 - 1, torch.tensor([0, 1, 1, 1, 0, 1])
    model.eval()  # no dropout: the same logits twice
    model.log = lambda *args, **kwargs: None  # no trainer to log to
    loss = model.training_step((x, y), 0)
    expected = F.cross_entropy(model(x), y, weight=torch.tensor([2.0, 2 / 3]), label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, F.cross_entropy(model(x), y, label_smoothing=0.1))


@pytest.mark.parametrize("weights, needle", [("often", "'auto' or a list"), ([1.0, 2.0, 3.0], "2 positive weights")])
def test_bad_class_weights(tmp_path, weights, needle):
    data = VWWDataModule(imbalanced_dataset(tmp_path / "d"), batch_size=8, num_workers=0, resolution=32)
    model = VWWClassifier(resolution=32, class_weights=weights)
    model._trainer = SimpleNamespace(datamodule=data, global_step=0)
    with pytest.raises(UserError, match=needle):
        model.setup("fit")


def test_folder_transfer_config_runs_both_stages(datasets, tmp_path, capsys, monkeypatch, caplog):
    """configs/folder_transfer.yaml end to end: bottleneck stage, then fine-tuning, a usable checkpoint."""
    monkeypatch.chdir(tmp_path)  # the config's bottleneck_cache/ is relative
    caplog.set_level("INFO")
    code = main(["fit", "--config", str(REPO / "configs" / "folder_transfer.yaml"),
                 "--model.init_from", str(datasets.ckpt), "--data.data_dir", datasets.three,
                 "--model.resolution", "32", "--data.num_workers", "0", "--data.batch_size", "8",
                 "--trainer.max_epochs", "2", "--trainer.callbacks.init_args.unfreeze_at_epoch", "1",
                 # the progress bar stays on: the CLI's own callbacks must join the config's, not replace them
                 "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
                 "--trainer.callbacks.init_args.unfreeze_lr", "0.001"])
    assert code == 0, capsys.readouterr().err[-2000:]
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    tuned = load_classifier(last)
    assert tuned.hparams.num_classes == 3 and tuned.class_names == ["x", "y", "z"]
    assert tuned.hparams.class_weights == "auto"
    logged = caplog.text
    assert "epoch 1: bottleneck mode ends" in logged and "epoch 1: stage 2 of fine-tuning" in logged
    assert "`max_epochs=2` reached" in logged
    assert len(list((tmp_path / "bottleneck_cache").iterdir())) == 1


def test_cache_keys_survive_the_disk_round_trip(tmp_path):
    from vwwtorch.training.bottleneck import FeatureCache

    keys = [bytes(20), b"\x01" * 19 + b"\x00", bytes(range(20))]  # trailing zero bytes included
    cache = FeatureCache(tmp_path)
    for i, key in enumerate(keys):
        cache.put(key, np.full(4, i, np.float32))
    assert cache.flush() is not None and cache.flush() is None  # nothing new the second time
    reread = FeatureCache(tmp_path)
    assert len(reread) == 3 and all(reread.get(k)[0] == i for i, k in enumerate(keys))


def test_cache_holds_the_loaded_backbones_features_with_ema_and_sanity_check(datasets, tmp_path):
    """The EMA callback swaps its average (at first the pre-init_from weights) in for validation,
    sanity check included; the features cached under the checkpoint's key must still be its own."""
    from vwwtorch.training.bottleneck import FeatureCache, image_keys

    _, callback = bottleneck_run(tmp_path, datasets, datasets.ckpt, tmp_path / "cache", epochs=1,
                                 callbacks=[TFWeightEMA()], num_sanity_val_steps=2)
    reference = load_classifier(datasets.ckpt).model  # the checkpoint's backbone, eval mode
    cache = FeatureCache(tmp_path / "cache" / callback.key)
    data = VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32, augmentation=STILL)
    data.setup("fit")
    checked = 0
    for loader in (data.val_dataloader(), data.train_dataloader()):
        for batch in loader:
            x, _ = data.augment(batch)  # train batches come raw, augmented on the training device
            with torch.no_grad():
                expected = reference.forward_features(x).flatten(1).numpy()
            for key, row in zip(image_keys(x), expected):
                np.testing.assert_allclose(cache.get(key), row, rtol=1e-5, atol=1e-6)
                checked += 1
    assert checked == 48


def test_two_stage_run_resumed_in_either_stage_equals_the_uninterrupted_run(datasets, tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    def run(root, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        model = VWWClassifier(resolution=32, num_classes=3, init_from=str(datasets.ckpt), image_log_every_n_steps=0)
        saver = ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
        callbacks = [TwoStageFinetuning(freeze_blocks=12, unfreeze_at_epoch=2, unfreeze_lr=0.003), saver]
        t = trainer(root, callbacks, max_epochs=4, limit_val_batches=1, enable_checkpointing=True)
        t.fit(model, VWWDataModule(datasets.three, batch_size=8, num_workers=0, resolution=32, seed=1),
              ckpt_path=ckpt_path)
        return model, t

    full, _ = run(tmp_path / "full")
    for epoch in (0, 2):  # resumed in stage 1, and in stage 2
        resumed, t = run(tmp_path / f"from{epoch}", ckpt_path=str(tmp_path / "full" / f"epoch={epoch}.ckpt"))
        assert all(p.requires_grad for p in resumed.parameters())
        assert t.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.003 * 0.98 ** (12 // 7))
        for name, tensor in full.state_dict().items():
            assert torch.equal(tensor, resumed.state_dict()[name]), (epoch, name)
