"""`vwwtorch firmware deps`: the command that fills the dependency cache (deps.py holds what is pinned).

The registry is read through the `deps` module at call time, never copied here, so what a run
installs is always `registry.DEPENDENCIES` as it stands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vwwtorch.plumbing.errors import UserError
from vwwtorch.firmware.toolchain import deps as registry


def _dest(dep: registry.Dependency) -> str:
    """The argparse attribute of a dependency's own --<name>-dir option."""
    return f"dir_{dep.name.replace('-', '_')}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vwwtorch.firmware.boards import BOARDS, board_choices, boards_that_run_here

    extra = "; ".join(f"{b.name} adds {', '.join(b.extra_deps)}" for b in BOARDS.values() if b.extra_deps)
    parser.add_argument("--board", help=f"what this board needs: {board_choices()}, or all ({extra}; "
                        f"default: what {board_choices(boards_that_run_here())} need)")
    parser.add_argument("--from-dir", metavar="DIR",
                        help="take each dependency from DIR/<name> (a git repository holding the "
                             "pinned commit, or a copy of the tree) or DIR/<GitHub archive name> "
                             "instead of downloading; names: " + ", ".join(registry.DEPENDENCIES))
    for dep in registry.DEPENDENCIES.values():
        parser.add_argument(registry.dir_flag(dep), dest=_dest(dep), metavar="PATH",
                            help=f"{dep.title}: a git repository, source tree or archive to use")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept a local tree that is not the pinned one (marked UNVERIFIED)")
    parser.add_argument("--force", action="store_true", help="reinstall what is already in the cache")
    parser.add_argument("--list", action="store_true", help="show the pins and what is installed")


def run_command(args) -> int:
    deps = _deps_for_board(args.board)
    explicit = {d.name: getattr(args, _dest(d)) for d in registry.DEPENDENCIES.values() if getattr(args, _dest(d))}
    root = registry.deps_root()
    if args.list:
        _print_list(root)
        return 0
    installer = registry.Installer(root, allow_unverified=args.allow_unverified)
    from_dir = Path(args.from_dir).expanduser() if args.from_dir else None
    if from_dir is not None and not from_dir.is_dir():
        raise UserError(f"--from-dir {from_dir} is not a folder")
    if explicit and from_dir is None:
        _install_given_trees(installer, explicit, deps, args.board, root)
        return 0
    deps = [d for d in registry.DEPENDENCIES.values() if d in deps or d.name in explicit]
    for dep in deps:  # dict order installs a patch's holder before the patched dependency
        given = explicit.get(dep.name)
        if registry.installed(dep, root) and not args.force and not given:
            print(f"{dep.name}: already installed ({dep.commit[:12]})")
            continue
        if given:
            installer.install_local(dep, Path(given))
        elif from_dir is not None:
            _install_from_dir(installer, dep, from_dir)
        else:
            installer.download(dep)
    print(f"firmware dependencies ready in {root}")
    if args.board is None:
        _hint_device_boards(deps)
    return 0


def _deps_for_board(board: str | None) -> list[registry.Dependency]:
    """What `--board` asks for: the boards that run here by default, every board, or one."""
    from vwwtorch.firmware.boards import BOARDS

    if board is None:
        return registry.needed_by_default()
    if board == registry.ALL_BOARDS:
        return registry.needed(None)
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of: {', '.join(BOARDS)}, {registry.ALL_BOARDS}")
    return registry.needed(board)


def _print_list(root: Path) -> None:
    """`--list`: every dependency, its pinned commit, whether it is installed and who needs it."""
    from vwwtorch.firmware.boards import BOARDS

    for dep in registry.DEPENDENCIES.values():
        stamp = registry.installed(dep, root)
        state = ("missing" if stamp is None else
                 "installed" + ("" if stamp.get("verified") else " (UNVERIFIED)"))
        users = [b.name for b in BOARDS.values() if dep.name in b.deps]
        boards = "every board" if len(users) == len(BOARDS) else ", ".join(users)
        print(f"{dep.name:13s} {dep.commit[:12]}  {state:22s} {boards:24s} {dep.archive_url}")
    print(f"cache: {root}")


def _install_given_trees(installer: registry.Installer, explicit: dict[str, str], deps: list[registry.Dependency],
                         board: str | None, root: Path) -> None:
    """Trees given one by one (offline): install exactly those, whatever --board says; download
    nothing, and say what is still missing and how to get it."""
    for dep in registry.DEPENDENCIES.values():  # dict order installs a patch's holder before the patched one
        if dep.name in explicit:
            installer.install_local(dep, Path(explicit[dep.name]))
    missing = [d for d in deps if registry.installed(d, root) is None]
    if missing:
        print("still missing: " + "; ".join(
            f"{d.name} ({registry.dir_flag(d)} PATH, or `{_command_for(board, d)}` "
            "to download it)" for d in missing))
    else:
        print(f"firmware dependencies ready in {root}")


def _install_from_dir(installer: registry.Installer, dep: registry.Dependency, from_dir: Path) -> None:
    for candidate in (from_dir / dep.name, from_dir / dep.archive_name):
        if candidate.exists():
            installer.install_local(dep, candidate)
            return
    raise UserError(f"{from_dir} has neither {dep.name}/ nor {dep.archive_name}")


def _hint_device_boards(deps: list[registry.Dependency]) -> None:
    """After a plain `firmware deps`: the boards whose vendor code is still to fetch."""
    from vwwtorch.firmware.boards import BOARDS

    for board in BOARDS.values():
        if any(d not in deps for d in registry.needed(board.name)):
            print(f"  (for {board.title} also run `vwwtorch firmware deps --board {board.name}`)")


def _command_for(board: str | None, dep: registry.Dependency) -> str:
    """The command that downloads `dep`: plain `firmware deps`, or with the first board needing it."""
    from vwwtorch.firmware.boards import BOARDS

    if board and board != registry.ALL_BOARDS:
        return registry.deps_command(board, [dep])
    needing = next(b.name for b in BOARDS.values() if dep.name in b.deps)
    return registry.deps_command(needing, [dep])
