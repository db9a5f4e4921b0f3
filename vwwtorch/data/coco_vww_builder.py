"""Build the Visual Wake Words dataset from a COCO 2014 tree: parallel, chunked and resumable.

Steps:

1. Plan (`coco_vww.make_plan`): labels and splits from the annotation files.
2. Decode: the images of each split are cut, in order, into chunks of `chunk_size`. Worker
   processes decode a chunk each and commit it as one file in the work folder `<out>.chunks/`
   (written under a temporary name, renamed when complete). The work folder holds `plan.json`
   with a fingerprint of everything that decides chunk contents; a rerun with the same settings
   skips the committed chunks, so an interrupted build resumes where it stopped.
3. Assemble: the chunks are copied in order into the standard dataset layout through
   `DatasetWriter` (`<out>.partial/`, renamed to `<out>` at the end), streaming into a
   memory-mapped `images.npy` so no process ever holds the whole split in RAM. `report.json`
   lists the images that could not be read. The work folder is then removed.

Every chunk is a pure function of its image list and settings, and the final order is fixed, so an
interrupted-and-resumed build gives byte-identical files to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vwwtorch.data import chunks as chunkio
from vwwtorch.data.coco_vww import LABEL_RULE, SPLIT_RULES, VwwPlan, make_plan
from vwwtorch.data.format import DatasetWriter, NpyAppender
from vwwtorch.plumbing.errors import Stopped, UserError
from vwwtorch.plumbing.outputs import check_folder, is_staging, write_file, written_as_user_error
from vwwtorch.plumbing.stopping import SIGNAL_EXIT_CODES, Terminated

PLAN_FILE = "plan.json"
REPORT_FILE = "report.json"
WORK_SUFFIX = ".chunks"
DEFAULT_CHUNK_SIZE = 256
DEFAULT_MAX_BAD_FRACTION = 0.01


@dataclass(frozen=True)
class BuildResult:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> class name -> images
    bad: int
    listed: int
    decoded: int  # images decoded in this run (0 when everything was resumed)
    seconds: float  # wall time of the decode phase in this run

    @property
    def images_per_second(self) -> float:
        return self.decoded / self.seconds if self.seconds > 0 else 0.0


def class_names(class_name: str) -> list[str]:
    slug = class_name.replace(" ", "_")
    return [f"no_{slug}", slug]


def _chunk_tasks(plan: VwwPlan, work: Path, chunk_size: int):
    """[(split, chunk_path, items)] in final dataset order."""
    tasks = []
    for split, entries in plan.splits.items():
        for index, start in enumerate(range(0, len(entries), chunk_size)):
            items = [(e.image_id, e.path, e.file, e.label) for e in entries[start:start + chunk_size]]
            tasks.append((split, work / f"{split}-{index:05d}{chunkio.CHUNK_SUFFIX}", items))
    return tasks


def _fingerprint(plan: VwwPlan, chunk_size: int, size: int, channels: int, fast: bool) -> str:
    """Hash of everything that decides what the chunk files contain (not paths, not --workers)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": 1, "chunk_size": chunk_size, "size": size, "channels": channels,
                         "fast_decode": fast, "class": plan.class_name, "threshold": plan.threshold,
                         "split": plan.split, "annotations": plan.annotations, "minival": plan.minival},
                        sort_keys=True).encode())
    for split, entries in plan.splits.items():
        h.update(split.encode())
        for e in entries:
            h.update(f"{e.image_id}\t{e.file}\t{e.label}\n".encode())
    return h.hexdigest()


def _read_plan(work: Path) -> dict | None:
    try:
        previous = json.loads((work / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return previous if isinstance(previous, dict) and "fingerprint" in previous else None


def _looks_like_ours(work: Path) -> bool:
    """Only ever delete a folder that holds nothing but what a build writes there."""
    return _read_plan(work) is not None or all(
        p.is_file() and (p.suffix == chunkio.CHUNK_SUFFIX or is_staging(p) or p.name in (PLAN_FILE, REPORT_FILE))
        for p in work.iterdir())


def prepare_work_dir(work: Path, fingerprint: str, settings: dict, restart: bool) -> None:
    plan_path = work / PLAN_FILE
    if work.exists():
        if not work.is_dir() or not _looks_like_ours(work):
            raise UserError(f"{work} exists and is not a vwwtorch build folder; move it away or choose another --out")
        previous = _read_plan(work)
        if restart or previous is None:  # no readable plan.json: nothing in it can be trusted
            shutil.rmtree(work)
        elif previous["fingerprint"] != fingerprint:
            raise UserError(f"{work} holds an unfinished build with different settings "
                            f"({previous.get('settings')}); rerun with those settings to resume it, "
                            "or pass --restart to discard it")
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():
        if is_staging(stale):
            stale.unlink(missing_ok=True)  # half-written chunks of an interrupted run
    if not plan_path.exists():
        write_json(plan_path, {"fingerprint": fingerprint, "settings": settings})


def _committed(path: Path, expected: int) -> bool:
    """A chunk file that exists was renamed into place complete; still check it reads back."""
    if not path.exists():
        return False
    try:
        labels, _, bad = chunkio.read_chunk_summary(path)
    except Exception:  # noqa: BLE001 - unreadable for any reason: rebuild it
        path.unlink(missing_ok=True)
        return False
    if len(labels) + len(bad) != expected:
        path.unlink(missing_ok=True)
        return False
    return True


def _bad_report(tasks, listed: int) -> dict:
    bad = []
    for split, path, _ in tasks:
        _, _, chunk_bad = chunkio.read_chunk_summary(path)
        bad.extend({"split": split, **b} for b in chunk_bad)
    bad.sort(key=lambda b: (b["split"], b["image_id"]))
    return {"images_listed": listed, "bad_count": len(bad),
            "bad_fraction": round(len(bad) / listed, 6) if listed else 0.0, "bad": bad}


def write_json(path: Path, data: dict) -> None:
    write_file(path, json.dumps(data, indent=2) + "\n", checked=True)


def _too_many_bad(bad: int, listed: int, max_bad_fraction: float) -> bool:
    return bad > max_bad_fraction * listed


def _fail_bad(work: Path, tasks, listed: int, max_bad_fraction: float, partial: bool) -> None:
    done = [t for t in tasks if t[1].exists()]
    report = _bad_report(done, listed)
    write_json(work / REPORT_FILE, report)
    first = report["bad"][0] if report["bad"] else {}
    qualifier = "at least " if partial else ""
    raise UserError(
        f"{qualifier}{report['bad_count']} of {listed} images are unreadable or missing "
        f"(more than --max-bad-fraction {max_bad_fraction:g}); e.g. {first.get('file')}: {first.get('reason')}; "
        f"list in {work / REPORT_FILE}")


def _decode_pending(pending, listed: int, already: int, bad_so_far: int, *, workers: int, size: int, channels: int,
                    fast: bool, progress: bool, max_bad_fraction: float, work: Path, tasks, desc: str,
                    on_chunk: Callable[[str], None] | None) -> int:
    """Decode the pending chunks over `workers` processes; returns images decoded."""
    from vwwtorch.plumbing.progress import progress_bar

    jobs = [(os.fspath(path), items, size, channels, fast) for _, path, items in pending]
    decoded = 0
    bad = bad_so_far
    with progress_bar(total=listed, initial=already, unit="img", desc=desc, disable=not progress,
              smoothing=0.1, dynamic_ncols=True) as bar:
        def done(result):
            nonlocal decoded, bad
            name, written, chunk_bad = result
            decoded += written + len(chunk_bad)
            bad += len(chunk_bad)
            bar.update(written + len(chunk_bad))
            if bad:
                bar.set_postfix(bad=bad, refresh=False)
            if on_chunk is not None:
                on_chunk(name)
            if _too_many_bad(bad, listed, max_bad_fraction):
                _fail_bad(work, tasks, listed, max_bad_fraction, partial=True)

        if workers <= 1 or len(jobs) <= 1:
            chunkio.worker_init()
            for job in jobs:
                done(chunkio.build_chunk(job))
        else:
            # spawn: fresh workers that do not inherit the parent's big annotation index.
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, len(jobs)), initializer=chunkio.worker_init,
                              initargs=(True,)) as pool:
                for result in pool.imap_unordered(chunkio.build_chunk, jobs):
                    done(result)
    return decoded


def _assemble(classes: list[str], split_names: list[str], tasks, out: Path, *, size: int, channels: int,
              provenance: dict, report: dict, overwrite: bool) -> dict[str, dict[str, int]]:
    """Stream the committed chunks, in order, into the dataset layout through `DatasetWriter`."""
    with DatasetWriter(out, classes=classes, image_size=(size, size), channels=channels,
                       provenance=provenance, overwrite=overwrite) as writer, written_as_user_error(out):
        return _assemble_into(writer, split_names, tasks, size=size, channels=channels, report=report)


def _assemble_into(writer: DatasetWriter, split_names: list[str], tasks, *, size: int, channels: int,
                   report: dict) -> dict[str, dict[str, int]]:
    for split in split_names:
        split_tasks = [t for t in tasks if t[0] == split]
        summaries = [chunkio.read_chunk_summary(path) for _, path, _ in split_tasks]
        labels = np.concatenate([s[0] for s in summaries]).astype(np.int64)
        ids = np.concatenate([s[1] for s in summaries]).astype(np.int64)
        if len(labels) == 0:
            raise UserError(f"every image of the {split} split is unreadable: nothing to build")
        folder = writer.split_folder(split)
        with NpyAppender(folder / "images.npy", np.uint8, (len(labels), size, size, channels)) as images:
            for _, path, _ in split_tasks:
                images.append(chunkio.read_chunk_images(path))
        np.save(folder / "labels.npy", labels)
        np.save(folder / "ids.npy", ids)
        writer.add_split_meta(split, labels)
    write_json(writer.tmp / REPORT_FILE, report)
    writer.finish()
    return {split: info["per_class"] for split, info in writer.meta["splits"].items()}


def check_build_options(*, image_size: int, channels: int, chunk_size: int, workers: int,
                        max_bad_fraction: float) -> None:
    """The options every chunked builder shares, checked before any work."""
    if channels not in (1, 3):
        raise UserError(f"--channels must be 1 or 3, got {channels}")
    if not 8 <= image_size <= 1024:
        raise UserError(f"--image-size must be between 8 and 1024, got {image_size}")
    if chunk_size < 1 or workers < 1:
        raise UserError("--chunk-size and --workers must be at least 1")
    if not 0 <= max_bad_fraction <= 1:
        raise UserError(f"--max-bad-fraction must be in [0, 1], got {max_bad_fraction}")


def build_vww(out: str | os.PathLike, sources, *, class_name: str = "person", threshold: float = 0.005,
              split: str = "book", minival_ids: str | os.PathLike | None = None, image_size: int = 128,
              channels: int = 1, workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
              max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION, overwrite: bool = False, restart: bool = False,
              progress: bool = True, fast_decode: bool = True,
              on_chunk: Callable[[str], None] | None = None) -> BuildResult:
    """Build the VWW dataset into `out` (see the module docstring); resumes an interrupted build.

    `on_chunk(name)` is called in this process after each chunk is committed (progress hooks, tests).
    """
    check_build_options(image_size=image_size, channels=channels, chunk_size=chunk_size, workers=workers,
                        max_bad_fraction=max_bad_fraction)
    out = check_folder(out, overwrite=overwrite)

    plan = make_plan(sources, class_name=class_name, threshold=threshold, split=split,
                     minival_ids=Path(minival_ids) if minival_ids is not None else None)
    work = out.with_name(out.name + WORK_SUFFIX)
    settings = {"class_name": plan.class_name, "threshold": plan.threshold, "split": plan.split,
                "image_size": image_size, "channels": channels, "chunk_size": chunk_size}
    prepare_work_dir(work, _fingerprint(plan, chunk_size, image_size, channels, fast_decode), settings, restart)

    tasks = _chunk_tasks(plan, work, chunk_size)
    listed = plan.total
    pending, already, bad_so_far = _resume_state(tasks, work, progress)
    start = time.perf_counter()
    with _stopped_as_resumable(tasks, work):
        decoded = _decode_pending(pending, listed, already, bad_so_far, workers=workers, size=image_size,
                                  channels=channels, fast=fast_decode, progress=progress,
                                  max_bad_fraction=max_bad_fraction, work=work, tasks=tasks,
                                  desc=f"decoding COCO ({plan.class_name})", on_chunk=on_chunk)
    seconds = time.perf_counter() - start
    report = _bad_report(tasks, listed)
    if _too_many_bad(report["bad_count"], listed, max_bad_fraction):
        _fail_bad(work, tasks, listed, max_bad_fraction, partial=False)

    provenance = _provenance(plan, report, image_size=image_size, channels=channels, fast_decode=fast_decode)
    counts = _assemble(class_names(plan.class_name), list(plan.splits), tasks, out, size=image_size,
                       channels=channels, provenance=provenance, report=report, overwrite=overwrite)
    shutil.rmtree(work, ignore_errors=True)
    return BuildResult(out=out, counts=counts, bad=report["bad_count"], listed=listed, decoded=decoded,
                       seconds=seconds)


def _resume_state(tasks, work: Path, progress: bool):
    """(chunks still to decode, images already built, bad images among them) for a resumed build."""
    pending = [t for t in tasks if not _committed(t[1], len(t[2]))]
    pending_paths = {t[1] for t in pending}
    finished = [t for t in tasks if t[1] not in pending_paths]
    already = sum(len(t[2]) for t in finished)
    bad_so_far = sum(len(chunkio.read_chunk_summary(t[1])[2]) for t in finished)
    if finished and progress:
        print(f"resuming: {len(finished)} of {len(tasks)} chunks ({already} images) already built in {work}")
    return pending, already, bad_so_far


@contextlib.contextmanager
def _stopped_as_resumable(tasks, work: Path):
    """Ctrl-C / SIGTERM while decoding: say how far the build got and that rerunning resumes it."""
    try:
        yield
    except (KeyboardInterrupt, Terminated) as exc:
        committed = sum(1 for t in tasks if t[1].exists())
        signal_name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else "SIGTERM"
        raise Stopped(f"stopped by {signal_name} with {committed} of {len(tasks)} chunks committed in {work}; "
                      "run the same command again to resume", SIGNAL_EXIT_CODES[signal_name]) from None


def _provenance(plan: VwwPlan, report: dict, *, image_size: int, channels: int, fast_decode: bool) -> dict:
    """What meta.json records about how the dataset was made (labels, splits, decoding)."""
    return {
        "source": "coco-vww",
        "builder": __name__,
        "class_name": plan.class_name,
        "category_id": plan.category_id,
        "small_object_area_threshold": plan.threshold,
        "label_rule": LABEL_RULE,
        "split": plan.split,
        "split_rule": SPLIT_RULES[plan.split],
        "annotations": plan.annotations,
        "minival_ids": plan.minival,
        "color": "L (JPEG luma)" if channels == 1 else "RGB",
        "resize": f"whole image resized to {image_size}x{image_size} (aspect ratio not kept, no crop), "
                  "bilinear" + (", JPEG DCT-domain downscaling" if fast_decode else ""),
        "ids": "COCO image ids",
        "images_listed": plan.total,
        "bad_images": report["bad_count"],
    }
