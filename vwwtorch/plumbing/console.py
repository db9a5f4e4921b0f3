"""Keep the console honest: progress and information on stdout, only what needs attention on stderr.

A failing command prints exactly one `vwwtorch: error:` line on stderr. For that to hold, the
chatter of the libraries underneath must not reach stderr first:
- TensorBoard imports TensorFlow when it can, and TensorFlow's C++ start-up logs (absl, oneDNN,
  CUDA probing) go straight to fd 2. Training needs none of TensorFlow, so TensorBoard is told to
  use its own stub (the `tensorboard.compat.notf` switch) and TensorFlow is never loaded for it.
- Lightning logs its informational lines (devices, seeds) to stderr; they go to stdout instead, and
  its advertisement for a cloud logger is dropped.
- Deprecation warnings raised inside third-party packages, which a user cannot act on, are hidden.
"""

from __future__ import annotations

import logging
import os
import sys
import types
import warnings

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
ADVERTS = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(ADVERTS)


class _InfoOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class _WarningsUp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_tensorflow_startup() -> None:
    """No TensorFlow C++ start-up lines on the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def keep_tensorflow_out_of_tensorboard() -> None:
    """TensorBoard's summary writer then uses its bundled stub instead of importing TensorFlow."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class _CurrentStream(logging.StreamHandler):
    """Writes to whatever `sys.stdout`/`sys.stderr` is at the time (tests and wrappers swap them)."""

    def __init__(self, name: str, keep: logging.Filter):
        super().__init__(getattr(sys, name))
        self._name = name
        self.addFilter(keep)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = getattr(sys, self._name)
        super().emit(record)


def route_lightning_logs() -> None:
    """Lightning's information to stdout, its warnings to stderr, no adverts.

    Lightning gives its loggers a stderr handler only when the root logger has none; when an
    application configured logging itself (or pytest did), its records propagate there and are left
    alone, apart from the adverts."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())
        own = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        if not own:
            continue
        for handler in own:
            logger.removeHandler(handler)
        # Records of child loggers (`...utilities.rank_zero`, which prints the advert) reach these
        # handlers without passing the parent logger's filters, so the handlers drop adverts too.
        for handler in (_CurrentStream("stdout", _InfoOnly()), _CurrentStream("stderr", _WarningsUp())):
            handler.addFilter(_DropAdverts())
            logger.addHandler(handler)


def hide_third_party_deprecations() -> None:
    for category in (DeprecationWarning, FutureWarning):
        for module in ("pytorch_lightning", "lightning_fabric", "torch", "jsonargparse", "tensorboard",
                       "torchmetrics", "onnxscript", "onnx2tf", "tensorflow", "keras", "tf_keras"):
            warnings.filterwarnings("ignore", category=category, module=module)
    # Lightning re-raises torch's pytree deprecation as a plain UserWarning-like message.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def quiet_console() -> None:
    quiet_tensorflow_startup()
    hide_third_party_deprecations()
