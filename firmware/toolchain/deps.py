"""`vwwtorch firmware deps`: the pinned third-party sources a firmware build needs, in a local cache.

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

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vwwtorch.contract.cache import deps_root
from vwwtorch.contract.children import child_group, run_child
from vwwtorch.contract.errors import UserError
from vwwtorch.contract.hashing import sha256_file
from vwwtorch.contract.outputs import publish_folder

STAMP = ".vwwtorch-dep.json"


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


# --- tree digests -----------------------------------------------------------------------------

def _kept(relpath: str, keep: tuple[str, ...]) -> bool:
    return not keep or any(relpath == k or relpath.startswith(k + "/") for k in keep)


def tree_digest(root: Path, keep: tuple[str, ...] = ()) -> str:
    """sha256 over "path<TAB>sha256-of-content" (or "path<TAB>-> target" for a symlink), one line
    per kept file, sorted by path. File modes and timestamps do not count; our stamp file does not."""
    root = Path(root)
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == STAMP or not _kept(rel, keep):
                continue
            if path.is_symlink():
                lines.append(f"{rel}\t-> {os.readlink(path)}\n")
            else:
                lines.append(f"{rel}\t{sha256_file(path)}\n")
    if not lines:
        return ""
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


# --- installing -------------------------------------------------------------------------------

def _extract_tar(fileobj, dest: Path, keep: tuple[str, ...], expect_commit: str | None,
                 other_commit_ok: bool = False) -> str | None:
    """Extract a one-top-folder tarball (GitHub's layout) into dest, dropping that folder; returns
    the commit `git archive` recorded in its header (None when it has none)."""
    recorded = None
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        commit_checked = False
        for member in tar:
            if not commit_checked:
                commit_checked = True
                recorded = (tar.pax_headers or {}).get("comment")
                if expect_commit and recorded and recorded != expect_commit and not other_commit_ok:
                    raise UserError(f"archive holds commit {recorded}, expected {expect_commit}")
            parts = PurePosixPath(member.name).parts
            if len(parts) < 2:
                continue
            rel = PurePosixPath(*parts[1:])
            if rel.is_absolute() or ".." in rel.parts or not _kept(rel.as_posix(), keep):
                continue
            target = dest / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.issym():
                link = PurePosixPath(member.linkname)
                if link.is_absolute():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, target)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
    return recorded


def _extract_zip(path: Path, dest: Path, keep: tuple[str, ...]) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if len(parts) < 2 or info.is_dir():
                continue
            rel = PurePosixPath(*parts[1:])
            if ".." in rel.parts or not _kept(rel.as_posix(), keep):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def _git_dir(path: Path) -> Path | None:
    """The git directory of a checkout or a bare repository, or None for a plain folder."""
    if (path / ".git").exists():
        return path / ".git"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    return None


def _copy_tree(source: Path, dest: Path, keep: tuple[str, ...]) -> None:
    """Copy the kept files of a plain source tree (a checkout without git, an unpacked archive)."""
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(source).as_posix()
            if rel == STAMP or not _kept(rel, keep):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                os.symlink(os.readlink(path), target)
            else:
                shutil.copyfile(path, target)


def _git_archive(git_dir: Path, dep: Dependency, dest: Path) -> None:
    """Extract the kept paths of `dep.commit` from a git repository into dest.

    `git archive` writes the same tar stream GitHub serves (before compression: one top folder,
    the commit id in a pax header); it is given the kept paths, so a large repository (the Ambiq
    SDK) is not exported whole, and its output is extracted as it streams, never held in memory.
    """
    command = ["git", "--git-dir", str(git_dir), "archive", "--format=tar",
               f"--prefix={dep.archive_name[:-len('.tar.gz')]}/", dep.commit]
    if dep.keep:
        command += ["--", *dep.keep]
    with tempfile.TemporaryFile() as errors:
        with child_group(command, stdout=subprocess.PIPE, stderr=errors) as process:
            assert process.stdout is not None
            unreadable = None
            try:
                _extract_tar(process.stdout, dest, dep.keep, dep.commit)
            except tarfile.ReadError as exc:
                unreadable = exc  # usually git failing before it wrote an archive: said below
            finally:
                process.stdout.close()
                status = process.wait()
        if status != 0:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip().splitlines()
            raise UserError(f"git archive of {dep.name} failed: {detail[-1] if detail else status}")
        if unreadable is not None:
            raise UserError(f"git archive of {dep.name} gave an unreadable tar stream ({unreadable})")


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
                _extract_zip(Path(archive), staging, dep.keep)
            else:
                with open(archive, "rb") as handle:
                    commit = _extract_tar(handle, staging, dep.keep, dep.commit, self.allow_unverified)
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
            git_dir = _git_dir(path)
            if git_dir is not None:
                if shutil.which("git") is None:
                    raise UserError(f"{path} is a git repository but git is not installed "
                                    "(apt-get install git)")
                has = run_child(["git", "--git-dir", str(git_dir), "cat-file", "-e",
                                 dep.commit + "^{commit}"], capture_output=True)
                if has.returncode != 0:
                    raise UserError(f"{path} does not contain {dep.name}'s pinned commit {dep.commit}; "
                                    "fetch it there first")
                _git_archive(git_dir, dep, staging)
                source, commit = f"git {path} @ {dep.commit[:12]}", dep.commit
            else:
                _copy_tree(path, staging, dep.keep)
                source, commit = str(path), None
            return self._finish(dep, staging, source, None, commit)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def download(self, dep: Dependency) -> Path:
        import urllib.request

        from vwwtorch.contract.progress import progress_bar

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


# --- command ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vwwtorch.firmware.boards import BOARDS, board_choices, boards_that_run_here

    extra = "; ".join(f"{b.name} adds {', '.join(b.extra_deps)}" for b in BOARDS.values() if b.extra_deps)
    parser.add_argument("--board", help=f"what this board needs: {board_choices()}, or all ({extra}; "
                        f"default: what {board_choices(boards_that_run_here())} need)")
    parser.add_argument("--from-dir", metavar="DIR",
                        help="take each dependency from DIR/<name> (a git repository holding the "
                             "pinned commit, or a copy of the tree) or DIR/<GitHub archive name> "
                             "instead of downloading; names: " + ", ".join(DEPENDENCIES))
    for dep in DEPENDENCIES.values():
        parser.add_argument(dir_flag(dep), dest=f"dir_{dep.name.replace('-', '_')}", metavar="PATH",
                            help=f"{dep.title}: a git repository, source tree or archive to use")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept a local tree that is not the pinned one (marked UNVERIFIED)")
    parser.add_argument("--force", action="store_true", help="reinstall what is already in the cache")
    parser.add_argument("--list", action="store_true", help="show the pins and what is installed")


def run_command(args) -> int:
    from vwwtorch.firmware.boards import BOARDS

    if args.board is None:
        deps = needed_by_default()
    elif args.board == ALL_BOARDS:
        deps = needed(None)
    else:
        if args.board not in BOARDS:
            raise UserError(f"unknown board {args.board!r}; choose one of: {', '.join(BOARDS)}, {ALL_BOARDS}")
        deps = needed(args.board)
    explicit = {d.name: getattr(args, f"dir_{d.name.replace('-', '_')}") for d in DEPENDENCIES.values()
                if getattr(args, f"dir_{d.name.replace('-', '_')}", None)}
    root = deps_root()
    if args.list:
        for dep in DEPENDENCIES.values():
            stamp = installed(dep, root)
            state = ("missing" if stamp is None else
                     "installed" + ("" if stamp.get("verified") else " (UNVERIFIED)"))
            users = [b.name for b in BOARDS.values() if dep.name in b.deps]
            boards = "every board" if len(users) == len(BOARDS) else ", ".join(users)
            print(f"{dep.name:13s} {dep.commit[:12]}  {state:22s} {boards:24s} {dep.archive_url}")
        print(f"cache: {root}")
        return 0
    installer = Installer(root, allow_unverified=args.allow_unverified)
    from_dir = Path(args.from_dir).expanduser() if args.from_dir else None
    if from_dir is not None and not from_dir.is_dir():
        raise UserError(f"--from-dir {from_dir} is not a folder")
    if explicit and from_dir is None:
        # Trees given one by one (offline): install exactly those, whatever --board says; download
        # nothing, and say what is still missing and how to get it.
        for dep in DEPENDENCIES.values():  # dict order installs a patch's holder before the patched one
            if dep.name in explicit:
                installer.install_local(dep, Path(explicit[dep.name]))
        missing = [d for d in deps if installed(d, root) is None]
        if missing:
            print("still missing: " + "; ".join(
                f"{d.name} ({dir_flag(d)} PATH, or `{_command_for(args.board, d)}` "
                "to download it)" for d in missing))
        else:
            print(f"firmware dependencies ready in {root}")
        return 0
    deps = [d for d in DEPENDENCIES.values() if d in deps or d.name in explicit]
    for dep in deps:  # dict order installs a patch's holder before the patched dependency
        given = explicit.get(dep.name)
        if installed(dep, root) and not args.force and not given:
            print(f"{dep.name}: already installed ({dep.commit[:12]})")
            continue
        if given:
            installer.install_local(dep, Path(given))
        elif from_dir is not None:
            for candidate in (from_dir / dep.name, from_dir / dep.archive_name):
                if candidate.exists():
                    installer.install_local(dep, candidate)
                    break
            else:
                raise UserError(f"{from_dir} has neither {dep.name}/ nor {dep.archive_name}")
        else:
            installer.download(dep)
    print(f"firmware dependencies ready in {root}")
    if args.board is None:
        for board in BOARDS.values():
            if any(d not in deps for d in needed(board.name)):
                print(f"  (for {board.title} also run `vwwtorch firmware deps --board {board.name}`)")
    return 0


def _command_for(board: str | None, dep: Dependency) -> str:
    """The command that downloads `dep`: plain `firmware deps`, or with the first board needing it."""
    from vwwtorch.firmware.boards import BOARDS

    if board and board != ALL_BOARDS:
        return deps_command(board, [dep])
    needing = next(b.name for b in BOARDS.values() if dep.name in b.deps)
    return deps_command(needing, [dep])
