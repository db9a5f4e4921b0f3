"""`vwwtorch firmware deps`: pinned third-party trees installed into the cache, and verified.

Runs offline with small stand-in dependencies made here (a git repository, GitHub-style tar.gz and
zip archives, a plain folder); the real pins are exercised by tests/test_firmware_targets.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import vwwtorch.firmware.toolchain.deps as deps
from cli_asserts import assert_one_line_error
from vwwtorch.firmware.toolchain.patching import PatchError, apply_patch

from vwwtorch.plumbing.cache import cache_root
from vwwtorch.cli import main as cli_main
from vwwtorch.plumbing.errors import UserError

TREE = {
    "include/lib.h": "int answer();\n",
    "src/lib.cc": "#include \"lib.h\"\nint answer() { return 41; }\n",
    "docs/huge.md": "not needed by builds\n",
    "LICENSE": "MIT\n",
}
PATCH = """From: someone
Subject: fix the answer

--- a/src/lib.cc
+++ b/src/lib.cc
@@ -1,2 +1,2 @@
 #include "lib.h"
-int answer() { return 41; }
+int answer() { return 42; }
-- 
2.40.0
"""


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


@pytest.fixture
def source(tmp_path):
    """A git repository with two commits; the first one is the pinned one."""
    repo = write_tree(tmp_path / "upstream", TREE)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pinned")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "src" / "lib.cc").write_text("changed later\n")
    git(repo, "commit", "-q", "-am", "later")
    plain = write_tree(tmp_path / "plain", TREE)
    return repo, commit, plain


def digest_of(files: dict[str, str], keep: tuple[str, ...] = ()) -> str:
    with tempfile.TemporaryDirectory() as folder:
        return deps.tree_digest(write_tree(Path(folder), files), keep)


def make_dep(commit: str, **overrides) -> deps.Dependency:
    """A dependency pinned to TREE (minus docs/) at `commit`."""
    keep = ("include", "src", "LICENSE")
    fields = dict(name="libdemo", title="demo", repo="demo/libdemo", commit=commit, keep=keep,
                  tree_sha256=digest_of(TREE, keep))
    fields.update(overrides)
    return deps.Dependency(**fields)


def use_demo_deps(monkeypatch, common: list, device_only: list = ()) -> None:
    """Pin only the demo dependencies: every board needs `common`, the flashed device also `device_only`."""
    import dataclasses

    from vwwtorch.firmware import boards

    monkeypatch.setattr(deps, "DEPENDENCIES", {d.name: d for d in (*common, *device_only)})
    monkeypatch.setattr(boards, "COMMON_DEPS", tuple(d.name for d in common))
    monkeypatch.setattr(boards, "BOARDS", {
        name: dataclasses.replace(board, extra_deps=tuple(d.name for d in device_only) if board.flashed else ())
        for name, board in boards.BOARDS.items()})


REAL_CACHE = cache_root()  # before the fixture below points each test at an empty one


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VWWTORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def github_tarball(path: Path, dep: deps.Dependency, files: dict[str, str], commit_comment=True) -> Path:
    """The layout GitHub serves: one top folder `<name>-<commit>/`, the commit in a pax header."""
    top = dep.archive_name[: -len(".tar.gz")]
    pax = {"comment": dep.commit} if commit_comment else {}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax) as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- tree digests -----------------------------------------------------------------------------

def test_tree_digest_is_the_documented_sum(tmp_path):
    """sha256 over sorted "path<TAB>sha256-of-content" lines, written out here independently."""
    import hashlib

    root = write_tree(tmp_path / "t", {"b.txt": "bee\n", "a/c.txt": "sea\n"})
    lines = sorted(f"{p}\t{hashlib.sha256(t.encode()).hexdigest()}\n" for p, t in
                   (("b.txt", "bee\n"), ("a/c.txt", "sea\n")))
    assert deps.tree_digest(root) == hashlib.sha256("".join(lines).encode()).hexdigest()


def test_tree_digest_depends_on_content_and_paths_only(tmp_path):
    a = write_tree(tmp_path / "a", TREE)
    b = write_tree(tmp_path / "b", dict(reversed(list(TREE.items()))))
    os.chmod(b / "LICENSE", 0o600)
    os.utime(b / "LICENSE", (0, 0))
    assert deps.tree_digest(a) == deps.tree_digest(b)
    (b / deps.STAMP).write_text("{}")  # our own stamp never counts
    assert deps.tree_digest(a) == deps.tree_digest(b)
    keep = ("include", "src")
    assert deps.tree_digest(a, keep) != deps.tree_digest(a)
    (b / "docs" / "huge.md").write_text("edited")
    assert deps.tree_digest(a, keep) == deps.tree_digest(b, keep)
    assert deps.tree_digest(a) != deps.tree_digest(b)
    (b / "src" / "lib.cc").rename(b / "src" / "other.cc")
    assert deps.tree_digest(a, keep) != deps.tree_digest(b, keep)


# --- installing from local sources ------------------------------------------------------------

def test_install_from_a_git_repository_takes_the_pinned_commit(source, isolated_cache):
    repo, commit, _ = source
    dep = make_dep(commit)
    path = deps.Installer(quiet=True).install_local(dep, repo)
    assert path == isolated_cache / "firmware" / "deps" / "libdemo"
    # The pinned commit's content, not the checkout's, and only the kept paths.
    assert (path / "src" / "lib.cc").read_text() == TREE["src/lib.cc"]
    assert not (path / "docs").exists()
    stamp = deps.installed(dep)
    assert stamp["verified"] and stamp["commit"] == commit and stamp["tree_sha256"] == dep.tree_sha256


def test_git_archive_exports_only_the_kept_paths(source, monkeypatch):
    repo, commit, _ = source
    dep = make_dep(commit)
    commands = []
    real_popen = subprocess.Popen

    def recording_popen(command, *args, **kwargs):
        commands.append(list(command))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    deps.Installer(quiet=True).install_local(dep, repo)
    archive = [c for c in commands if "archive" in c]
    assert len(archive) == 1 and archive[0][-4:] == ["--", "include", "src", "LICENSE"]
    # A kept path the commit lacks: git's own complaint, in one line, and nothing installed.
    odd = make_dep(commit, name="odd", keep=("include", "no-such-dir"))
    with pytest.raises(UserError, match="git archive of odd failed: .*no-such-dir"):
        deps.Installer(quiet=True).install_local(odd, repo)
    assert deps.installed(odd) is None


def test_install_from_archives_and_folders(source, tmp_path):
    _, commit, plain = source
    dep = make_dep(commit)
    installer = deps.Installer(quiet=True)
    tarball = github_tarball(tmp_path / dep.archive_name, dep, TREE)
    for local in (tarball, plain):
        path = installer.install_local(dep, local)
        assert deps.tree_digest(path, dep.keep) == dep.tree_sha256
        assert deps.installed(dep)["verified"]
    # A zip with GitHub's layout (what TFLM's own scripts download).
    archive = tmp_path / "libdemo.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, text in TREE.items():
            zf.writestr(f"libdemo-{commit}/{rel}", text)
    path = installer.install_local(dep, archive)
    assert deps.tree_digest(path, dep.keep) == dep.tree_sha256


def test_a_tree_that_is_not_the_pinned_one_is_refused(source, tmp_path):
    _, commit, plain = source
    dep = make_dep(commit)
    (plain / "src" / "lib.cc").write_text("tampered\n")
    with pytest.raises(UserError, match="not the pinned tree.*--allow-unverified"):
        deps.Installer(quiet=True).install_local(dep, plain)
    assert deps.installed(dep) is None
    assert not any((deps.deps_root()).iterdir())  # no staging folder left behind
    # Accepted on request, and marked as such.
    deps.Installer(allow_unverified=True, quiet=True).install_local(dep, plain)
    assert deps.installed(dep)["verified"] is False


def test_an_archive_of_another_commit_is_refused(source, tmp_path):
    _, commit, _ = source
    dep = make_dep(commit)
    other = deps.Dependency(**{**dep.__dict__, "commit": "f" * 40})
    tarball = github_tarball(tmp_path / "x.tar.gz", other, TREE)
    with pytest.raises(UserError, match=f"archive holds commit {'f' * 40}, expected {commit}"):
        deps.Installer(quiet=True).install_local(dep, tarball)


def test_git_repository_without_the_commit(source, tmp_path):
    repo, _, _ = source
    dep = make_dep("0123456789" * 4)
    with pytest.raises(UserError, match="does not contain libdemo's pinned commit"):
        deps.Installer(quiet=True).install_local(dep, repo)


def test_patch_from_another_dependency_is_applied(source, monkeypatch, tmp_path):
    _, commit, plain = source
    holder_tree = {"patches/fix.patch": PATCH}
    holder = deps.Dependency(name="holder", title="holder", repo="demo/holder", commit=commit,
                             tree_sha256=digest_of(holder_tree))
    patched = make_dep(commit, patch=("holder", "patches/fix.patch"))
    installer = deps.Installer(quiet=True)
    with pytest.raises(UserError, match="install holder first"):
        installer.install_local(patched, plain)
    installer.install_local(holder, write_tree(tmp_path / "h", holder_tree))
    path = installer.install_local(patched, plain)
    assert (path / "src" / "lib.cc").read_text() == '#include "lib.h"\nint answer() { return 42; }\n'
    assert deps.installed(patched)["patch_sha256"]


# --- the command ------------------------------------------------------------------------------

def test_command_installs_from_dir_then_reports_it_installed(source, monkeypatch, tmp_path, capsys):
    repo, commit, _ = source
    dep = make_dep(commit)
    use_demo_deps(monkeypatch, [dep])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "libdemo").symlink_to(repo)
    assert cli_main(["firmware", "deps", "--from-dir", str(mirror)]) == 0
    assert "libdemo: " in capsys.readouterr().out
    assert cli_main(["firmware", "deps", "--from-dir", str(mirror)]) == 0
    assert "already installed" in capsys.readouterr().out
    assert cli_main(["firmware", "deps", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "libdemo" in listing and "installed" in listing and dep.archive_url in listing
    assert deps.require("host") == {"libdemo": deps.deps_root() / "libdemo"}


def test_download_without_network_is_one_clear_line(source, monkeypatch, capsys):
    import urllib.request

    _, commit, _ = source
    dep = make_dep(commit)
    use_demo_deps(monkeypatch, [dep])

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert_one_line_error(cli_main(["firmware", "deps"]), capsys.readouterr().err, "cannot download",
                          "--libdemo-dir or --from-dir")
    assert not [p for p in deps.deps_root().iterdir() if p.name.startswith(".")]


def test_download_is_verified_and_the_archive_digest_recorded(source, monkeypatch, tmp_path, capsys):
    import hashlib
    import urllib.request

    _, commit, _ = source
    dep = make_dep(commit)
    blob = github_tarball(tmp_path / "served.tar.gz", dep, TREE).read_bytes()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(blob))}

    requested = []

    def serve(url, timeout):
        requested.append(url)
        return Response(blob)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    use_demo_deps(monkeypatch, [dep])
    assert cli_main(["firmware", "deps"]) == 0
    assert requested == [f"https://github.com/demo/libdemo/archive/{commit}.tar.gz"]
    digest = hashlib.sha256(blob).hexdigest()
    assert digest in capsys.readouterr().out
    assert json.loads((deps.deps_root() / "libdemo" / deps.STAMP).read_text())["archive_sha256"] == digest
    # Once pinned, a different archive is refused.
    pinned = deps.Dependency(**{**dep.__dict__, "archive_sha256": "0" * 64})
    use_demo_deps(monkeypatch, [pinned])
    assert cli_main(["firmware", "deps", "--force"]) == 2
    assert "pinned " + "0" * 64 in capsys.readouterr().err


def test_missing_dependencies_name_the_command(source):
    with pytest.raises(UserError, match=r"run `vwwtorch firmware deps` \("):
        deps.require("qemu_m4", root=Path("/nonexistent"))
    with pytest.raises(UserError, match=r"ambiq-sdk.*run `vwwtorch firmware deps --board sparkfun_edge`"):
        deps.require("sparkfun_edge", root=Path("/nonexistent"))


def test_board_specific_dependencies_only_with_their_board(source, monkeypatch, tmp_path, capsys):
    """Without --board: what host and qemu_m4 need; a board's SDK only with --board or all."""
    repo, commit, _ = source
    common = make_dep(commit)
    edge_only = make_dep(commit, name="vendor-sdk")
    use_demo_deps(monkeypatch, [common], [edge_only])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("libdemo", "vendor-sdk"):
        (mirror / name).symlink_to(repo)
    assert cli_main(["firmware", "deps", "--from-dir", str(mirror)]) == 0
    assert "--board sparkfun_edge" in capsys.readouterr().out
    assert deps.installed(common) and deps.installed(edge_only) is None
    assert deps.require("qemu_m4") == {"libdemo": deps.deps_root() / "libdemo"}
    with pytest.raises(UserError, match=r"vendor-sdk; run `vwwtorch firmware deps --board sparkfun_edge`"):
        deps.require("sparkfun_edge")
    assert cli_main(["firmware", "deps", "--board", "sparkfun_edge", "--from-dir", str(mirror)]) == 0
    assert deps.installed(edge_only) and set(deps.require("sparkfun_edge")) == {"libdemo", "vendor-sdk"}
    capsys.readouterr()
    assert cli_main(["firmware", "deps", "--board", "all", "--from-dir", str(mirror)]) == 0
    assert capsys.readouterr().out.count("already installed") == 2
    assert cli_main(["firmware", "deps", "--board", "esp32"]) == 2
    assert "choose one of: host, qemu_m4, sparkfun_edge, all" in capsys.readouterr().err


def test_pins_cover_what_a_cortex_m_build_needs():
    needed = {d.name for d in deps.needed("qemu_m4")}
    assert {"tflite-micro", "flatbuffers", "gemmlowp", "cmsis-nn", "cmsis"} <= needed
    assert {"cmsis-nn", "cmsis"}.isdisjoint(d.name for d in deps.needed("host"))
    flatbuffers = deps.DEPENDENCIES["flatbuffers"]
    assert flatbuffers.patch == ("tflite-micro", "tensorflow/lite/micro/tools/make/flatbuffers.patch")


def test_pins_are_what_the_pinned_tflm_pins():
    """Against an independent source: the pinned TFLM tree's own download scripts name the commits
    of CMSIS-NN, CMSIS 6 and gemmlowp, and flatbuffers' headers carry the version TFLM asks for."""
    import re

    tflm = REAL_CACHE / "firmware" / "deps" / "tflite-micro"
    if not (tflm / deps.STAMP).is_file() or not (REAL_CACHE / "firmware" / "deps" / "flatbuffers" / deps.STAMP).is_file():
        pytest.skip("TFLM and flatbuffers are not in the cache: run `vwwtorch firmware deps`")
    make = tflm / "tensorflow" / "lite" / "micro" / "tools" / "make"
    scripts = {"cmsis-nn": make / "ext_libs" / "cmsis_nn_download.sh", "cmsis": make / "ext_libs" / "cmsis_download.sh",
               "gemmlowp": make / "third_party_downloads.inc"}
    for name, script in scripts.items():
        assert deps.DEPENDENCIES[name].commit in re.findall(r"[0-9a-f]{40}", script.read_text()), name
    tag = re.search(r'ZIP_PREFIX="v(\d+)\.(\d+)\.(\d+)"', (make / "flatbuffers_download.sh").read_text()).groups()
    base = (REAL_CACHE / "firmware" / "deps" / "flatbuffers" / "include" / "flatbuffers" / "base.h").read_text()
    version = tuple(re.search(rf"#define FLATBUFFERS_VERSION_{part} (\d+)", base)[1]
                    for part in ("MAJOR", "MINOR", "REVISION"))
    assert version == tag


# --- the patch applier ------------------------------------------------------------------------

def test_patch_applies_with_shifted_lines_and_never_half_way(tmp_path):
    root = write_tree(tmp_path / "t", {"src/lib.cc": "// header\n// more\n" + TREE["src/lib.cc"],
                                       "other.txt": "a\n"})
    assert apply_patch(PATCH, root) == ["src/lib.cc"]
    assert "return 42" in (root / "src" / "lib.cc").read_text()
    with pytest.raises(PatchError, match="hunk 1 of src/lib.cc does not match"):
        apply_patch(PATCH, root)  # already applied
    two_files = PATCH.replace("-- \n2.40.0\n", "") + (
        "--- a/other.txt\n+++ b/other.txt\n@@ -1 +1 @@\n-zzz\n+b\n")
    before = (root / "src" / "lib.cc").read_text()
    (root / "src" / "lib.cc").write_text(TREE["src/lib.cc"])
    with pytest.raises(PatchError):
        apply_patch(two_files, root)
    assert (root / "src" / "lib.cc").read_text() == TREE["src/lib.cc"]  # untouched
    assert before != TREE["src/lib.cc"]
