"""Output that is never half-written, and that is checked before any long work starts.

A folder is built in a hidden sibling `.<name>.partial/` and renamed to `<name>` when complete; an
existing `<name>` is moved aside first and removed only once the new one is in place. A file is
written to `.<name>.partial` beside it, flushed, and renamed. Any failure, Ctrl-C or SIGTERM
(which the CLI turns into an exception) removes the staging copy, so the target is either the old
complete output, the new complete output, or absent.

`check_folder` and `check_file` say in one line what is wrong with a target (an existing file where
a folder goes, the current folder, a folder that cannot be written) and are meant to be called
before the work that would be lost.

No output may touch an input: the command line declares its inputs (`reading_inputs`, done by the
CLI for every path a command is given), and a target that is an input, holds one, or lies inside
one is refused in one line, with or without --overwrite, before anything is written.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from vwwtorch.plumbing.errors import UserError
from vwwtorch.plumbing.names import printable

STAGING_SUFFIX = ".partial"
OLD_SUFFIX = ".old"


def staging_path(target: Path, unique: bool = False) -> Path:
    """`.<name>.partial` beside the target; `unique` adds the process id, for files that a leftover
    process of a killed run might still be writing."""
    tag = f".{os.getpid()}" if unique else ""
    return target.parent / f".{target.name}{STAGING_SUFFIX}{tag}"


def is_staging(path: Path) -> bool:
    return path.name.startswith(".") and STAGING_SUFFIX in path.name


def os_error_text(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# (real path, how the command line named it) of every input of the running command.
_inputs: list[tuple[Path, str]] = []


@contextmanager
def reading_inputs(inputs: Iterable[tuple[str | os.PathLike, str]]) -> Iterator[None]:
    """While the block runs, `check_folder` and `check_file` refuse any target that overlaps one of
    `inputs`: (path, how it was given, e.g. "--data d") pairs; paths that do not exist are ignored."""
    saved = list(_inputs)
    for path, given in inputs:
        if os.path.lexists(path):
            _inputs.append((Path(os.path.realpath(path)), given))
    try:
        yield
    finally:
        _inputs[:] = saved


def refuse_inputs(target: Path, flag: str) -> None:
    """A one-line UserError when `target` is, holds or lies inside an input of the command."""
    real = Path(os.path.realpath(target))
    for source, given in _inputs:
        if real == source:
            problem = "is also an input of this command"
        elif real in source.parents:
            problem = "holds an input of this command"
        elif source in real.parents:
            problem = "lies inside an input of this command"
        else:
            continue
        raise UserError(f"{flag} {printable(target)} {problem} ({printable(given)}); outputs never replace "
                        "their inputs, with or without --overwrite: name another path")


def _resolve(path: str | os.PathLike, flag: str, folder: bool) -> Path:
    text = os.fspath(path)
    if not text.strip():
        raise UserError(f"{flag} is empty: give a path")
    normal = Path(os.path.normpath(Path(text).expanduser().absolute()))
    if not folder:
        return normal
    # `.`, `..` or a folder holding the current one: replacing it would pull the floor out.
    here = Path.cwd()
    if normal == here or normal in here.parents or normal.parent == normal:
        raise UserError(f"{flag} {text} is the current folder or one above it; outputs are replaced as "
                        "a whole, so name a new folder inside it (for example {flag} ./out)".replace(
                            "{flag}", flag))
    return normal


def _probe_parent(target: Path, flag: str) -> None:
    """Create the parent folder if needed and prove a file can be made in it."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{target.name}.write-test"
        probe.mkdir()
        probe.rmdir()
    except FileExistsError:
        raise UserError(f"cannot write {flag} {target}: {parent} is not a folder") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise UserError(f"cannot write {flag} {target}: a parent of it is a file, not a folder") from None
        raise UserError(f"cannot write {flag} {target}: {os_error_text(exc)}") from None


def check_folder(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """The absolute target folder, or a one-line UserError saying why it cannot be written."""
    target = _resolve(path, flag, folder=True)
    refuse_inputs(target, flag)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise UserError(f"{flag} {target} is a file, not a folder; name a folder")
        try:
            occupied = any(target.iterdir())
        except OSError as exc:
            raise UserError(f"cannot read {flag} {target}: {os_error_text(exc)}") from None
        if occupied and not overwrite:
            raise UserError(f"{target} already exists and is not empty (pass --overwrite to replace it)")
        if os.path.ismount(target):
            raise UserError(f"{flag} {target} is a mount point and cannot be replaced; name a folder inside it")
    _probe_parent(target, flag)
    return target


def check_file(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """The absolute target file, or a one-line UserError saying why it cannot be written."""
    target = _resolve(path, flag, folder=False)
    refuse_inputs(target, flag)
    if target.is_dir():
        raise UserError(f"{flag} {target} is a folder; name a file")
    _probe_parent(target, flag)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def publish_folder(staging: Path, target: Path) -> None:
    """Swap a finished staging folder into place; the old target goes only after the new one is there."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}{OLD_SUFFIX}"
        _remove(old)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        _remove(old)


@contextmanager
def removed_unless_done(folder: Path, keep_for: tuple[type[BaseException], ...] = ()) -> Iterator[Path]:
    """For a folder that is worked in place (an incremental build): made if absent, and removed again
    if the block fails, so that a refused or interrupted first run leaves nothing behind; kept for
    the failures in `keep_for` (a compiler's error, whose log the message points into)."""
    created = not folder.exists()
    folder.mkdir(exist_ok=True)
    try:
        yield folder
    except BaseException as exc:
        if created and not isinstance(exc, keep_for):
            _remove(folder)
        raise


@contextmanager
def written_as_user_error(target: Path) -> Iterator[None]:
    """A disk that fills up or a permission lost mid-write is the user's to fix: one line, exit 2."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS,
                         errno.EIO, errno.EBUSY):
            raise UserError(f"cannot write {target}: {os_error_text(exc)}") from None
        raise


@contextmanager
def staged_folder(path: str | os.PathLike, *, overwrite: bool = False, flag: str = "--out",
                  checked: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes `path`, on any failure it is removed."""
    target = Path(path) if checked else check_folder(path, overwrite=overwrite, flag=flag)
    staging = staging_path(target)
    _remove(staging)  # left by a killed run
    try:
        with written_as_user_error(target):
            staging.mkdir()
            yield staging
            publish_folder(staging, target)
    finally:
        if staging.exists():
            _remove(staging)


@contextmanager
def staged_path(path: str | os.PathLike, *, flag: str = "--out", checked: bool = False,
                unique: bool = False) -> Iterator[Path]:
    """Yield a path to write (by any means: a tool, a library); on success it is renamed to `path`,
    on any failure removed."""
    target = Path(path) if checked else check_file(path, flag=flag)
    staging = staging_path(target, unique)
    try:
        with written_as_user_error(target):
            yield staging
            os.replace(staging, target)
    finally:
        if staging.exists():
            _remove(staging)


@contextmanager
def staged_file(path: str | os.PathLike, mode: str = "w", *, flag: str = "--out", checked: bool = False,
                unique: bool = False, **open_kwargs) -> Iterator[IO]:
    """Yield an open file; on success it is flushed to disk and renamed to `path`, on any failure removed."""
    with staged_path(path, flag=flag, checked=checked, unique=unique) as staging:
        with open(staging, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_file(path: str | os.PathLike, data: bytes | str, *, flag: str = "--out", checked: bool = False) -> Path:
    """Write a whole file atomically; returns its path."""
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    kwargs = {} if mode == "wb" else {"encoding": "utf-8"}
    with staged_file(path, mode, flag=flag, checked=checked, **kwargs) as handle:
        handle.write(data)
    return Path(path)
