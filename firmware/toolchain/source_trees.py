"""Source trees for `vwwtorch firmware deps`: their digest, and extracting them from archives and repositories.

A tree is pinned by `tree_digest`: every kept file's path and sha256 (a link's target), sorted.
The extractors keep only the paths a dependency keeps, strip the archive's top folder, and refuse
paths that would leave the destination.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from vwwtorch.plumbing.children import child_group
from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.hashing import sha256_file

STAMP = ".vwwtorch-dep.json"  # what was installed, from where; in each tree, never part of its digest


# --- tree digests -----------------------------------------------------------------------------

def _kept(relpath: str, keep: tuple[str, ...]) -> bool:
    return not keep or any(relpath == k or relpath.startswith(k + "/") for k in keep)


def _kept_files(root: Path, keep: tuple[str, ...], skip_dirs: tuple[str, ...] = ()):
    """(path, relative posix path) of each kept file or symlink under root (a symlinked folder is
    one entry, not walked), our stamp left out; folders named in skip_dirs are not entered."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel != STAMP and _kept(rel, keep):
                yield path, rel


def _archive_path(name: str, keep: tuple[str, ...]) -> PurePosixPath | None:
    """An archive member's path below its top folder, or None when it is the top folder, leaves
    the destination or is not kept."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2:
        return None
    rel = PurePosixPath(*parts[1:])
    if rel.is_absolute() or ".." in rel.parts or not _kept(rel.as_posix(), keep):
        return None
    return rel


def tree_digest(root: Path, keep: tuple[str, ...] = ()) -> str:
    """sha256 over "path<TAB>sha256-of-content" (or "path<TAB>-> target" for a symlink), one line
    per kept file, sorted by path. File modes and timestamps do not count; our stamp file does not."""
    lines = []
    for path, rel in _kept_files(Path(root), keep):
        if path.is_symlink():
            lines.append(f"{rel}\t-> {os.readlink(path)}\n")
        else:
            lines.append(f"{rel}\t{sha256_file(path)}\n")
    if not lines:
        return ""
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


# --- installing -------------------------------------------------------------------------------

def extract_tar(fileobj, dest: Path, keep: tuple[str, ...], expect_commit: str | None,
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
            rel = _archive_path(member.name, keep)
            if rel is None:
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


def extract_zip(path: Path, dest: Path, keep: tuple[str, ...]) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            rel = _archive_path(info.filename, keep)
            if rel is None or info.is_dir():
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def git_dir_of(path: Path) -> Path | None:
    """The git directory of a checkout or a bare repository, or None for a plain folder."""
    if (path / ".git").exists():
        return path / ".git"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    return None


def copy_tree(source: Path, dest: Path, keep: tuple[str, ...]) -> None:
    """Copy the kept files of a plain source tree (a checkout without git, an unpacked archive)."""
    for path, rel in _kept_files(source, keep, skip_dirs=(".git",)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            os.symlink(os.readlink(path), target)
        else:
            shutil.copyfile(path, target)


def git_archive(git_dir: Path, dest: Path, *, name: str, commit: str, keep: tuple[str, ...], prefix: str) -> None:
    """Extract the kept paths of `commit` (dependency `name`) from a git repository into dest.

    `git archive` writes the same tar stream GitHub serves (before compression: one top folder,
    the commit id in a pax header); it is given the kept paths, so a large repository (the Ambiq
    SDK) is not exported whole, and its output is extracted as it streams, never held in memory.
    """
    command = ["git", "--git-dir", str(git_dir), "archive", "--format=tar",
               f"--prefix={prefix}/", commit]
    if keep:
        command += ["--", *keep]
    with tempfile.TemporaryFile() as errors:
        with child_group(command, stdout=subprocess.PIPE, stderr=errors) as process:
            assert process.stdout is not None
            unreadable = None
            try:
                extract_tar(process.stdout, dest, keep, commit)
            except tarfile.ReadError as exc:
                unreadable = exc  # usually git failing before it wrote an archive: said below
            finally:
                process.stdout.close()
                status = process.wait()
        if status != 0:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip().splitlines()
            raise UserError(f"git archive of {name} failed: {detail[-1] if detail else status}")
        if unreadable is not None:
            raise UserError(f"git archive of {name} gave an unreadable tar stream ({unreadable})")
