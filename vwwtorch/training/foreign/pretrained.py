"""`vwwtorch pretrained`: a registry of real, trained person detectors, pinned by URL and sha256.

Each entry names the published files it is made from (each pinned at a commit of its repository,
by URL and sha256) and how they become a vwwtorch checkpoint (`vwwtorch.training.foreign.importer`).
Files are cached like the firmware dependencies, under `$VWWTORCH_CACHE/pretrained/<name>/`, with the
checkpoint made from them; `--from FILE` installs a copy fetched elsewhere (matched by sha256), and a
file that an installed firmware dependency already holds (TFLM's person_detect.tflite) is taken from
there. `--model.init_from pretrained:NAME` starts training from an entry (`checkpoint_path`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vwwtorch.plumbing.cache import cache_root, deps_root
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_file
from vwwtorch.plumbing.outputs import write_file

PREFIX = "pretrained:"
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"       # the TFLM pin of `vwwtorch firmware deps`
MLPERF_COMMIT = "1afd2c9820f795965a6134facd0b4dfae41ef23f"     # mlcommons/tiny
MLPERF_MODELS = "benchmark/training/visual_wake_words/trained_models"


@dataclass(frozen=True)
class PinnedFile:
    name: str
    url: str
    sha256: str
    in_dependency: tuple[str, str] | None = None   # (firmware dependency, path inside it) holding a copy
    optional: bool = False   # not part of the checkpoint (test inputs): kept when given, never demanded


@dataclass(frozen=True)
class Pretrained:
    name: str
    title: str
    source: str                      # where it comes from, one line
    files: tuple[PinnedFile, ...]
    make: Callable[[list[Path]], object]   # the cached files it needs, in order -> importer.Imported

    @property
    def needed(self) -> tuple[PinnedFile, ...]:
        return tuple(f for f in self.files if not f.optional)

    def cached(self) -> bool:
        """Every file the checkpoint is made from is in the cache, whole (its pinned sha256)."""
        return all(_verified(folder(self.name) / f.name, f.sha256) for f in self.needed)


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def _from_tflite(files: list[Path]):
    from vwwtorch.training.foreign.importer import from_tflite

    return from_tflite(files[0])


def _from_keras_with_int8_ranges(files: list[Path]):
    from vwwtorch.models.mobilenet_v1 import named_variant
    from vwwtorch.training.foreign.importer import from_keras, with_ranges_from

    return with_ranges_from(from_keras(files[0], named_variant("mlperf")["input_range"]), files[1])


PERSON_DETECT = "tensorflow/lite/micro/models/person_detect.tflite"
REGISTRY: dict[str, Pretrained] = {p.name: p for p in (
    Pretrained(
        name="person-gray-96",
        title="TinyML book / TFLM person detector: slim MobileNetV1-0.25, 96x96 grayscale, int8 QAT (~84% VWW)",
        source=f"tensorflow/tflite-micro@{TFLM_COMMIT[:12]} {PERSON_DETECT}",
        files=(PinnedFile("person_detect.tflite", _raw("tensorflow/tflite-micro", TFLM_COMMIT, PERSON_DETECT),
                          "808cfdfc0cf3a6fa6f6fa26bfa379ea97c16d5db7334637766e39c3408502e9d",
                          in_dependency=("tflite-micro", PERSON_DETECT)),),
        make=_from_tflite),
    Pretrained(
        name="person-rgb-96",
        title="MLPerf Tiny VWW reference: MobileNetV1-0.25 (ReLU, dense head), 96x96 RGB in [0, 1] (~85% VWW)",
        source=f"mlcommons/tiny@{MLPERF_COMMIT[:12]} {MLPERF_MODELS}/vww_96.h5 (+ vww_96_int8.tflite's ranges)",
        files=(PinnedFile("vww_96.h5", _raw("mlcommons/tiny", MLPERF_COMMIT, f"{MLPERF_MODELS}/vww_96.h5"),
                          "af9111d50e6e85b2f2123345e0316ef1c384865ebf6b06340ddac7e66017450f"),
               PinnedFile("vww_96_int8.tflite",
                          _raw("mlcommons/tiny", MLPERF_COMMIT, f"{MLPERF_MODELS}/vww_96_int8.tflite"),
                          "597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b"),
               # MLPerf's two test inputs (frames for the proof; see vwwtorch.training.foreign.frames).
               PinnedFile("vww_inputs.cc", _raw("mlcommons/tiny", MLPERF_COMMIT, f"{MLPERF_MODELS}/vww/vww_inputs.cc"),
                          "06ee15db7d84b5bb2e4731d7d6bddf15b4e8adef680636449b5308b35cb22548", optional=True)),
        make=_from_keras_with_int8_ranges),
)}


def folder(name: str) -> Path:
    return cache_root() / "pretrained" / name


def get_entry(name: str) -> Pretrained:
    if name not in REGISTRY:
        raise UserError(f"no pretrained model {name!r}; known: {', '.join(REGISTRY)} (see `vwwtorch pretrained list`)")
    return REGISTRY[name]


def fetch_command(name: str) -> str:
    return f"vwwtorch pretrained get {name} --out {name}.ckpt"


def _install_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, staging)
    staging.replace(target)


def install(entry: Pretrained, from_files: list[Path] = (), quiet: bool = False) -> list[Path]:
    """The files the entry's checkpoint is made from, in the cache, sha256-verified: from `from_files`,
    an installed firmware dependency, the cache itself, or a download; a one-line UserError when one
    cannot be had. An optional file is installed only when given with `from_files`."""
    from vwwtorch.plumbing.download import download_verified

    given = {}
    for path in from_files:
        if not Path(path).is_file():
            raise UserError(f"--from {path} does not exist or is not a file")
        given[sha256_file(path)] = Path(path)
    known = {f.sha256 for f in entry.files}
    stray = [str(p) for digest, p in given.items() if digest not in known]
    if stray:
        raise UserError(f"--from {stray[0]} is none of {entry.name}'s files (its sha256 matches no pin: "
                        f"{', '.join(f.name for f in entry.files)})")
    paths = []
    for pinned in entry.files:
        target = folder(entry.name) / pinned.name
        local = given.get(pinned.sha256)
        if pinned.optional and local is None:
            continue
        if local is None and pinned.in_dependency is not None:
            candidate = deps_root() / pinned.in_dependency[0] / pinned.in_dependency[1]
            local = candidate if _verified(candidate, pinned.sha256) else None
        if local is not None:
            _install_copy(local, target)
        elif not _verified(target, pinned.sha256):
            if not quiet:
                print(f"downloading {pinned.url}", flush=True)
            also = (f", or install it with `vwwtorch firmware deps` ({pinned.in_dependency[0]} holds it)"
                    if pinned.in_dependency else "")
            download_verified(pinned.url, target, pinned.sha256, quiet=quiet,
                              hint=f"without network, fetch it elsewhere and pass it with --from FILE "
                                   f"(`vwwtorch pretrained get {entry.name} --from {pinned.name} ...`){also}")
        if not pinned.optional:
            paths.append(target)
    return paths


def checkpoint_path(name: str, from_files: list[Path] = (), quiet: bool = False) -> Path:
    """The cached checkpoint of entry `name`, made (and its files installed) on first use."""
    from vwwtorch.training.foreign.importer import build_checkpoint, write_checkpoint

    entry = get_entry(name)
    files = install(entry, from_files, quiet=quiet)
    ckpt = folder(name) / f"{name}.ckpt"
    stamp = folder(name) / f"{name}.ckpt.sources"
    # Remade when the sources or the importer (this vwwtorch) change, or the cached checkpoint is not
    # the one made (its sha256, the stamp's last line: a damaged or replaced file is never served).
    sources = "\n".join([_version(), *(f.sha256 for f in entry.needed)])
    recorded = stamp.read_text(errors="replace").rsplit("\n", 1) if stamp.is_file() else ["", ""]
    if not (recorded[0] == sources and len(recorded) == 2 and _verified(ckpt, recorded[1])):
        write_checkpoint(build_checkpoint(entry.make(files)), ckpt, flag="cache")
        write_file(stamp, f"{sources}\n{sha256_file(ckpt)}", flag="cache", checked=True)
    return ckpt


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"vwwtorch {version('vwwtorch')}"
    except PackageNotFoundError:
        return "vwwtorch (not installed)"


def resolve(reference: str) -> Path:
    """`pretrained:NAME` as the cached checkpoint's path; any other string as a path."""
    if reference.startswith(PREFIX):
        return checkpoint_path(reference[len(PREFIX):], quiet=True)
    return Path(reference)


def cached_file(sha256: str) -> Path | None:
    """A registry file already in the cache whose pinned sha256 is `sha256` (an imported checkpoint's
    source, for the export to compare with), or None."""
    for entry in REGISTRY.values():
        for pinned in entry.files:
            path = folder(entry.name) / pinned.name
            if pinned.sha256 == sha256 and path.is_file() and sha256_file(path) == sha256:
                return path
    return None
