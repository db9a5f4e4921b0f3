"""The shipped configs are reachable by name from any folder, and `--help` says each default once."""

import argparse
import re
from pathlib import Path

import pytest
import yaml

from cli_asserts import assert_one_line_error
from vwwtorch.cli import build_parser, main
from vwwtorch.data.transforms import Augmentation

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def printed_config(capsys, *args) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("given", ["quickstart", "quickstart.yaml", "configs/quickstart.yaml",
                                   "--config=quickstart"])
def test_a_shipped_config_is_found_from_another_folder(given, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [given] if given.startswith("--") else ["--config", given]
    config = printed_config(capsys, *args)
    assert config["data"]["data_dir"] == "data/synthetic"
    assert config["model"]["width"] == 0.25 and config["trainer"]["max_epochs"] == \
        yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["trainer"]["max_epochs"]


def test_a_file_in_the_folder_wins_over_the_shipped_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("quickstart.yaml").write_text("data:\n  data_dir: mine\n")
    assert printed_config(capsys, "--config", "quickstart.yaml")["data"]["data_dir"] == "mine"


def test_an_unknown_config_is_one_line_naming_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--config", "quickstrat", "--print_config"])
    assert_one_line_error(code, capsys.readouterr().err, "--config quickstrat", *SHIPPED)
    code = main(["config", "show", "nope"])
    assert_one_line_error(code, capsys.readouterr().err, "nope", *SHIPPED)


def test_config_list_and_show(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == SHIPPED
    for name in SHIPPED:
        assert main(["config", "show", name]) == 0
        assert capsys.readouterr().out == (REPO / "configs" / f"{name}.yaml").read_text()


def test_augmentation_defaults_are_the_book_configs_values():
    defaults = Augmentation()
    for name in ("vww_96_grayscale", "wake_vision_96_grayscale"):
        augmentation = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["data"]["augmentation"]
        assert tuple(augmentation["crop_area"]) == defaults.crop_area, name
        assert augmentation["crop_aspect"] == [0.75, pytest.approx(defaults.crop_aspect[1], abs=1e-4)], name
        assert (augmentation["hflip"], augmentation["brightness"], augmentation["contrast"]) == \
            (defaults.hflip, defaults.brightness, defaults.contrast), name


def _parsers(parser: argparse.ArgumentParser, name: str = "vwwtorch"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_help_shows_each_default_once_and_no_doubled_percent():
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "%%" not in text, name
        for option in re.split(r"\n  (?=-)", text)[1:]:
            flat = " ".join(option.split())
            assert len(re.findall(r"(?i)\bdefault", flat)) <= 1, (name, flat)
            assert not re.search(r"\(default: (None|True|False)\)", flat), (name, flat)


def test_fit_help_shows_each_default_once(capsys):
    """jsonargparse appends "default: X" itself: not where the help text already names the default
    (qat_delay's and resident's docstrings say what theirs depends on; a bare "null" contradicts them)."""
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    options = {o.split()[0]: " ".join(o.split()) for o in re.split(r"\n  (?=-)", capsys.readouterr().out)[1:]}
    for name in ("--model.qat_delay", "--data.resident", "--data.num_workers"):
        assert len(re.findall(r"(?i)\bdefault", options[name])) == 1, options[name]
    for name, flat in options.items():
        prose, _, appended = flat.rpartition("(type:")
        if prose and "default" in prose.lower():
            assert "default:" not in appended.split(")")[0], (name, flat)
    assert "default: 96" in options["--data.batch_size"]  # a default the help does not name is still shown


def test_model_variant_options_are_described(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("activation ACTIVATION", "conv_bias {true,false}", "head HEAD", "input_range INPUT_RANGE"):
        described = re.search(re.escape(f"--model.{option}") + r" (.*?)\(type:", text)
        assert described and len(described[1].strip()) > 10, option
