"""The pinned third-party sources a firmware build needs, in a local cache (`vwwtorch firmware deps`,
whose command is install_deps.py; extracting and digesting trees is source_trees.py).

Nothing here is vendored. Each dependency is pinned by a git commit and by the sha256 of its
extracted tree (`tree_digest`): every file's path and sha256, sorted. The tree digest is what we
check, whatever the source: a GitHub archive tarball of the commit (downloaded at user time), a
local git repository holding the commit (exported with `git archive`, which is what GitHub's
archives are made of), or a plain local copy of the tree. We also check the commit id that
`git archive` writes into a tarball's header. The digest of a GitHub tarball itself is not pinned:
it depends on GitHub's compressor and cannot be computed offline; `deps` prints it after a download
so it can be recorded in `archive_sha256`, which is then checked too.

`vwwtorch firmware deps` alone fetches what the boards that run here (natively or emulated) need;
a device's vendor SDK (a large download) comes with `--board NAME` or `--board all`. Which board
needs what is the board registry's (firmware/boards/__init__.py).

Cache layout (`$VWWTORCH_CACHE`, default `~/.cache/vwwtorch`):
    firmware/deps/<name>/                 the kept part of the tree (see `Dependency.keep`)
    firmware/deps/<name>/.vwwtorch-dep.json   what was installed, from where, verified or not
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vwwtorch.plumbing.cache import deps_root
from vwwtorch.plumbing.children import run_child
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_file
from vwwtorch.plumbing.outputs import publish_folder
from vwwtorch.firmware.toolchain.source_trees import (
    STAMP,
    copy_tree,
    extract_tar,
    extract_zip,
    git_archive,
    git_dir_of,
    tree_digest,
)


@dataclass(frozen=True)
class Dependency:
    name: str                      # folder in the cache and key for `--<name>-dir`
    title: str                     # one line for listings
    repo: str                      # GitHub owner/name
    commit: str
    tree_sha256: str               # tree_digest() of the kept files, before any patch
    keep: tuple[str, ...] = ()     # top-level paths kept from the archive (empty: everything)
    patch: tuple[str, str] | None = None  # (dependency holding the patch, path inside it)
    url: str | None = None         # archive URL, when not GitHub's archive of `commit`
    archive_sha256: str | None = None

    @property
    def archive_url(self) -> str:
        return self.url or f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"

    @property
    def archive_name(self) -> str:
        """File name GitHub gives the tarball, also looked for in `--from-dir`."""
        return f"{self.repo.split('/')[1]}-{self.commit}.tar.gz"


# Pins: TFLM at a 2026 commit, and for the others exactly what that commit's
# tensorflow/lite/micro/tools/make/{flatbuffers_download.sh, third_party_downloads.inc,
# ext_libs/cmsis_nn_download.sh, ext_libs/cmsis_download.sh} pin. flatbuffers is the v25.9.23 tag
# (commit below); Debian's libflatbuffers-dev (2.0.8) is too old for TFLM's generated schema.
DEPENDENCIES: dict[str, Dependency] = {dep.name: dep for dep in (
    Dependency(
        name="tflite-micro", title="TensorFlow Lite Micro", repo="tensorflow/tflite-micro",
        commit="90b983c2b3f1480642e040bbd2ddb37b998f3424",
        tree_sha256="e51525a5840105561dc95f0240b9832303d614b3dbeb7a3fc10f74193c2b4d0e"),
    Dependency(
        name="flatbuffers", title="FlatBuffers v25.9.23 headers (with TFLM's patch)",
        repo="google/flatbuffers", commit="187240970746d00bbd26b0f5873ed54d2477f9f3",
        tree_sha256="79b2433ce3a1e68e7240fc976cb3cf6959e5d3c50bbd717f633683fa75fdbb63",
        keep=("include", "LICENSE"),
        patch=("tflite-micro", "tensorflow/lite/micro/tools/make/flatbuffers.patch")),
    Dependency(
        name="gemmlowp", title="gemmlowp fixed-point headers", repo="google/gemmlowp",
        commit="719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
        tree_sha256="8fed09ef49b1fa62ab73286c748c462e6fc82b0298c8110209a791ec55ca07ca",
        keep=("fixedpoint", "internal", "LICENSE")),
    Dependency(
        name="cmsis-nn", title="CMSIS-NN kernels (Cortex-M)", repo="ARM-software/CMSIS-NN",
        commit="4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
        tree_sha256="50b7478181ff12b7b5ebea2bf1c7c8d2e4f565fd38ab2efc3d77f6627cf59abb",
        keep=("Include", "Source", "LICENSE")),
    Dependency(
        name="cmsis", title="CMSIS 6 core headers (Cortex-M)", repo="ARM-software/CMSIS_6",
        commit="5782d6f8057906d360f4b95ec08a2354afe5c9b9",
        tree_sha256="30a3b5dc91cd681179cebf24b867c3696553f50c36cc1f7cb7c91a55a134a2c5",
        keep=("CMSIS/Core/Include", "LICENSE")),
    # For the Apollo3 device port. SparkFun's mirror of AmbiqSuite 2.4.2 (its boards_sfe submodule is the
    # BSP commit pinned below); only the Apollo3 HAL, register and CMSIS headers, utils and the
    # LED/button drivers are kept. The GitHub archive of the whole SDK is large (~700 MB unpacked).
    Dependency(
        name="ambiq-sdk", title="AmbiqSuite SDK 2.4.2 (Apollo3 HAL, SparkFun mirror)",
        repo="sparkfun/AmbiqSuiteSDK", commit="e280cbde3e366509da6768ab95471782a05d2371",
        tree_sha256="faa8940d7ee42fa42d5f3475e51dc68a0203650859952d0b956c1ad60743ba97",
        keep=("mcu/am_sdk_version.h", "mcu/apollo3", "CMSIS/AmbiqMicro/Include/apollo3.h",
              "CMSIS/AmbiqMicro/Include/system_apollo3.h", "CMSIS/ARM/Include", "utils", "devices",
              "AM-BSD-EULA.txt", "VERSION.txt"),
        ),
    Dependency(
        name="sparkfun-bsp", title="SparkFun Apollo3 BSPs (Edge pins, LEDs, HM01B0 camera driver)",
        repo="sparkfun/SparkFun_Apollo3_AmbiqSuite_BSPs",
        commit="6398086a1a87ddea78274521683ba3ad817bee82",
        tree_sha256="15d520176e31fd9614eb1fda5df7d05baa16aefd50962ac6aa9f29cbeb40de68",
        keep=("edge/bsp", "common/third_party/hm01b0", "README.md")),
)}


def dir_flag(dep: Dependency) -> str:
    """The command-line flag that installs `dep` from a local copy."""
    return "--tflm-dir" if dep.name == "tflite-micro" else f"--{dep.name}-dir"


class Installer:
    """Fills the cache; every install goes to a temporary folder renamed into place when verified."""

    def __init__(self, root: Path | None = None, allow_unverified: bool = False, quiet: bool = False):
        self.root = Path(root) if root else deps_root()
        self.allow_unverified = allow_unverified
        self.quiet = quiet

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text)

    def _finish(self, dep: Dependency, staging: Path, source: str, archive_sha256: str | None,
                commit: str | None) -> Path:
        """`commit`: what was installed as far as the source tells (None: a plain tree, unknown)."""
        digest = tree_digest(staging, dep.keep)
        verified = digest == dep.tree_sha256
        if not verified and not self.allow_unverified:
            raise UserError(
                f"{dep.name} from {source} is not the pinned tree (commit {dep.commit[:12]}; tree "
                f"digest {digest[:16]}..., expected {dep.tree_sha256[:16]}...); use the pinned "
                f"commit, or --allow-unverified to build with it anyway")
        patch_sha = None
        if dep.patch:
            from vwwtorch.firmware.toolchain.patching import PatchError, apply_patch

            holder, rel = dep.patch
            patch_file = self.root / holder / rel
            if not patch_file.is_file():
                raise UserError(f"{dep.name} needs {rel} from {holder}; install {holder} first")
            text = patch_file.read_text(encoding="utf-8")
            try:
                apply_patch(text, staging)
            except PatchError as exc:
                raise UserError(f"{holder}'s patch does not apply to {dep.name}: {exc}") from None
            patch_sha = hashlib.sha256(text.encode()).hexdigest()
        stamp = {"name": dep.name, "commit": dep.commit if verified else commit, "pinned_commit": dep.commit,
                 "tree_sha256": digest, "verified": verified, "source": source,
                 "archive_sha256": archive_sha256, "patch_sha256": patch_sha}
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        final = self.root / dep.name
        publish_folder(staging, final)  # an older install goes only once this one is in place
        state = "verified" if verified else "UNVERIFIED"
        shown = (stamp["commit"] or "unknown commit")[:12]
        self._say(f"{dep.name}: {shown} {state} ({source}) -> {final}")
        return final

    def _staging(self, dep: Dependency) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{dep.name}-", dir=self.root))

    def install_archive(self, dep: Dependency, archive: Path, source: str | None = None) -> Path:
        data_sha = sha256_file(Path(archive))
        if dep.archive_sha256 and data_sha != dep.archive_sha256:
            raise UserError(f"{archive} has sha256 {data_sha}, pinned {dep.archive_sha256}")
        staging = self._staging(dep)
        try:
            commit = None
            if str(archive).endswith(".zip"):
                extract_zip(Path(archive), staging, dep.keep)
            else:
                with open(archive, "rb") as handle:
                    commit = extract_tar(handle, staging, dep.keep, dep.commit, self.allow_unverified)
            return self._finish(dep, staging, source or str(archive), data_sha, commit)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def install_local(self, dep: Dependency, path: Path) -> Path:
        path = Path(path).expanduser()
        if path.is_file():
            return self.install_archive(dep, path)
        if not path.is_dir():
            raise UserError(f"{path} (given for {dep.name}) does not exist")
        staging = self._staging(dep)
        try:
            git_dir = git_dir_of(path)
            if git_dir is not None:
                if shutil.which("git") is None:
                    raise UserError(f"{path} is a git repository but git is not installed "
                                    "(apt-get install git)")
                has = run_child(["git", "--git-dir", str(git_dir), "cat-file", "-e",
                                 dep.commit + "^{commit}"], capture_output=True)
                if has.returncode != 0:
                    raise UserError(f"{path} does not contain {dep.name}'s pinned commit {dep.commit}; "
                                    "fetch it there first")
                git_archive(git_dir, staging, name=dep.name, commit=dep.commit, keep=dep.keep,
                            prefix=dep.archive_name[:-len('.tar.gz')])
                source, commit = f"git {path} @ {dep.commit[:12]}", dep.commit
            else:
                copy_tree(path, staging, dep.keep)
                source, commit = str(path), None
            return self._finish(dep, staging, source, None, commit)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def download(self, dep: Dependency) -> Path:
        import urllib.request

        from vwwtorch.plumbing.progress import progress_bar

        url = dep.archive_url
        self.root.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{dep.name}-", suffix=".download", dir=self.root)
        try:
            with os.fdopen(handle, "wb") as out:
                try:
                    response = urllib.request.urlopen(url, timeout=60)
                except OSError as exc:
                    raise UserError(f"cannot download {url}: {exc}; without network, pass a local "
                                    f"copy with {dir_flag(dep)} or --from-dir") from None
                total = int(response.headers.get("Content-Length") or 0) or None
                with response, progress_bar(total=total, unit="B", unit_scale=True, desc=dep.name,
                                    disable=True if self.quiet else None) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
            path = self.install_archive(dep, Path(tmp_name), source=url)
            if dep.archive_sha256 is None:
                digest = json.loads((path / STAMP).read_text())["archive_sha256"]
                self._say(f"  archive sha256 {digest} (not pinned yet: record it as archive_sha256)")
            return path
        finally:
            Path(tmp_name).unlink(missing_ok=True)


# --- looking things up ------------------------------------------------------------------------

ALL_BOARDS = "all"  # `--board all`: what every board needs


def needed(board: str | None) -> list[Dependency]:
    """What building for `board` needs (None: what any board needs), in install order."""
    from vwwtorch.firmware.boards import BOARDS, get_board

    names = set(get_board(board).deps) if board else {n for b in BOARDS.values() for n in b.deps}
    return [d for d in DEPENDENCIES.values() if d.name in names]


def needed_by_default() -> list[Dependency]:
    """What `vwwtorch firmware deps` without --board installs: what the boards that run here need."""
    from vwwtorch.firmware.boards import boards_that_run_here

    names = {d.name for board in boards_that_run_here() for d in needed(board.name)}
    return [d for d in DEPENDENCIES.values() if d.name in names]


def deps_command(board: str, missing: list[Dependency]) -> str:
    """The exact command that installs `missing` for `board`."""
    default = {d.name for d in needed_by_default()}
    if all(d.name in default for d in missing):
        return "vwwtorch firmware deps"
    return f"vwwtorch firmware deps --board {board}"


def installed(dep: Dependency, root: Path | None = None) -> dict | None:
    """The stamp of an installed dependency at its pinned commit, else None."""
    stamp_file = (Path(root) if root else deps_root()) / dep.name / STAMP
    try:
        stamp = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return None
    # Installed for this pin: verified, or accepted with --allow-unverified (which records what it got).
    return stamp if stamp.get("pinned_commit", stamp.get("commit")) == dep.commit else None


def require(board: str, root: Path | None = None) -> dict[str, Path]:
    """Paths of the dependencies `board` needs; a UserError naming `firmware deps` if any is missing."""
    base = Path(root) if root else deps_root()
    missing = [d for d in needed(board) if installed(d, base) is None]
    if missing:
        raise UserError(f"firmware dependencies missing from {base}: {', '.join(d.name for d in missing)}; "
                        f"run `{deps_command(board, missing)}` (or set VWWTORCH_CACHE)")
    return {d.name: base / d.name for d in needed(board)}
