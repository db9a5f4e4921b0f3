"""Training configs for `vwwtorch fit --config`, shipped with the package (`vwwtorch.configs`)."""

from importlib.resources import files
from pathlib import Path


def config_path(name: str) -> Path:
    """The installed path of a shipped config, e.g. `config_path("quickstart.yaml")`."""
    return Path(str(files(__name__) / name))
