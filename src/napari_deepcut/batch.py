"""Segment many files: in this process, in a local process pool, or on a dask.distributed cluster.

The main process reads every input and writes every output; workers only receive arrays and return
label arrays, so a remote cluster needs no shared file system (only napari-deepcut installed).
One task is one image, or one frame of a time series (``frames=True``: axis 0 is time).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .files import read_image, write_json, write_labels
from .settings import Settings, from_kwargs


def default_workers() -> int:
    """``min(2, number of CPUs)``: each worker trains one network at a time."""
    return max(1, min(2, os.cpu_count() or 1))


def segment_task(
    image: np.ndarray,
    parts: int | str | None,
    settings: dict[str, Any],
    channel_axis: int | None,
    spacing,
) -> dict[str, Any]:
    """Segment one image (the unit of work sent to a worker).

    Returns
    -------
    dict
        ``foreground`` (uint8), ``parts`` (uint16 or None), ``metadata`` (settings, version, per
        stage facts) and ``warnings`` (messages raised during the run).
    """
    from .pipeline import segment

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = segment(image, parts, channel_axis=channel_axis, spacing=spacing, **settings)
    messages = sorted({str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)})
    return {
        "foreground": result.foreground,
        "parts": result.parts,
        "metadata": result.metadata(),
        "warnings": [m for m in messages if "Sparse invariant checks" not in m],
    }


def _limit_threads(n_threads: int) -> None:
    """Process-pool initializer: one worker's share of the CPU for torch (oversubscribed threads
    slow small graphs down several-fold)."""
    import torch

    torch.set_num_threads(max(1, n_threads))


# --- executors ---------------------------------------------------------------------------------


class _Inline:
    """Runs each task at submission, in this process (one worker: no pool to start)."""

    def submit(self, fn, *args):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def wait_any(self, pending):
        return concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)

    def close(self):
        pass


class _LocalPool(_Inline):
    """A process pool. Workers come from a fork server that has imported the engine but never
    run it (so no torch / OpenMP thread state is forked, and torch is imported once, not once per
    worker); where there is no fork server (Windows), they are spawned."""

    def __init__(self, workers: int):
        import multiprocessing

        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["napari_deepcut.pipeline"])
        else:
            context = multiprocessing.get_context("spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_limit_threads,
            initargs=((os.cpu_count() or 1) // workers,),
        )

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def close(self):
        self.pool.shutdown(cancel_futures=True)


class _Dask:
    """A dask.distributed cluster: ``scheduler`` is its address or a ``distributed.Client``."""

    def __init__(self, scheduler):
        import distributed

        self.distributed = distributed
        if isinstance(scheduler, distributed.Client):
            self.client, self.own = scheduler, False
        else:
            self.client, self.own = distributed.Client(scheduler), True

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def wait_any(self, pending):
        done, not_done = self.distributed.wait(list(pending), return_when="FIRST_COMPLETED")
        return set(done), set(not_done)

    def close(self):
        if self.own:
            self.client.close()


# --- the batch ---------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What happened to each input: outputs written, failures and skips with their reasons."""

    written: dict[Path, list[Path]] = field(default_factory=dict)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


@dataclass
class _Job:
    path: Path
    outputs: dict[str, Path]
    n_tasks: int = 1
    results: dict[int, dict] = field(default_factory=dict)
    error: str | None = None


def output_paths(path: Path, out_dir: Path, parts) -> dict[str, Path]:
    """Where the outputs of ``path`` go: ``<stem>_foreground.tif``, ``<stem>_parts.tif`` (with
    parts) and ``<stem>_settings.json``."""
    stem = path.stem
    outputs = {"foreground": out_dir / f"{stem}_foreground.tif"}
    if parts is not None:
        outputs["parts"] = out_dir / f"{stem}_parts.tif"
    outputs["settings"] = out_dir / f"{stem}_settings.json"
    return outputs


def _frame_channel_axis(channel_axis: int | None, ndim: int) -> int | None:
    """The file's channel axis, counted in a frame (the file without its axis 0)."""
    if channel_axis is None:
        return None
    axis = channel_axis % ndim
    if axis == 0:
        raise ValueError("with --frames, axis 0 is time and cannot be the channel axis")
    return axis - 1


def run_batch(
    images: list[Path],
    out_dir: Path,
    *,
    parts: int | str | None = None,
    settings: Settings | dict | None = None,
    channel_axis: int | None = None,
    spacing=None,
    frames: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler=None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Segment every image file and write its label images and settings into ``out_dir``.

    Parameters
    ----------
    images : list of Path
        Image files (see :func:`napari_deepcut.files.find_images`).
    out_dir : Path
        Created if needed. Per input ``<stem>``: ``<stem>_foreground.tif`` (uint8, 0/1, the
        input's spatial shape), ``<stem>_parts.tif`` (uint16) with ``parts``, and
        ``<stem>_settings.json`` (the settings, version and per-stage facts; usable as ``--config``).
    parts : int, "auto" or None
        As for :func:`napari_deepcut.segment`.
    settings : Settings or dict
        Checked with :func:`napari_deepcut.settings.from_kwargs`.
    frames : bool
        Axis 0 of every file is time: each frame is segmented on its own (one task per frame) and
        the outputs are stacks ``(T, *spatial)``.
    overwrite : bool
        Replace existing outputs; otherwise an input whose outputs exist is skipped and reported.
    workers : int, optional
        Local worker processes (default :func:`default_workers`); 1 runs in this process.
    scheduler : str or distributed.Client, optional
        Run the tasks on this dask.distributed cluster instead of locally.
    log : callable, optional
        Receives one line per problem (default: print to stderr).

    Returns
    -------
    BatchReport
    """
    config = settings if isinstance(settings, Settings) else from_kwargs(dict(settings or {}))
    settings_dict = config.as_dict()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport()

    bar = None
    if show_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(images), unit="image", desc="napari-deepcut", file=sys.stderr)
        except ImportError:
            pass
    if log is None:
        if bar is not None:
            from tqdm import tqdm

            def log(line):
                tqdm.write(line, file=sys.stderr)
        else:

            def log(line):
                print(line, file=sys.stderr)

    # Jobs in input order; an input whose outputs would clash with an earlier one's is refused.
    jobs: list[_Job] = []
    claimed: dict[Path, Path] = {}
    for path in map(Path, images):
        outputs = output_paths(path, out_dir, parts)
        clash = claimed.get(outputs["foreground"])
        if clash is not None:
            report.failed.append((path, f"its outputs would overwrite those of {clash}; rename one"))
            log(f"error: {path}: its outputs would overwrite those of {clash}; rename one")
            continue
        claimed[outputs["foreground"]] = path
        existing = [p for key, p in outputs.items() if key != "settings" and p.exists()]
        if existing and not overwrite:
            reason = f"{existing[0].name} exists (use --overwrite to replace it)"
            report.skipped.append((path, reason))
            log(f"skipped: {path}: {reason}")
            continue
        jobs.append(_Job(path, outputs))
    if bar is not None:
        bar.update(len(images) - len(jobs))

    def tasks():
        """(job index, frame index or None, image array, channel axis) for every task."""
        for index, job in enumerate(jobs):
            try:
                array = read_image(job.path)
                if frames:
                    if array.ndim < 3:
                        raise ValueError(f"--frames needs at least 3 axes, got shape {array.shape}")
                    axis = _frame_channel_axis(channel_axis, array.ndim)
                    if array.shape[0] == 0:
                        raise ValueError("the file holds no frames")
                    job.n_tasks = array.shape[0]
                    for t in range(array.shape[0]):
                        if job.error is not None:  # an earlier frame failed: the file has failed
                            break
                        yield index, t, np.ascontiguousarray(array[t]), axis
                else:
                    yield index, None, array, channel_axis
            except Exception as error:
                job.error = str(error)
                job.n_tasks = 0
                finish(job)

    def finish(job: _Job) -> None:
        if job.error is None:
            try:
                report.written[job.path] = _write_outputs(job, parts, frames, channel_axis, spacing)
            except Exception as error:
                job.error = f"cannot write its outputs: {error}"
        if job.error is not None:
            report.failed.append((job.path, job.error))
            log(f"error: {job.path}: {job.error}")
        else:
            for message in sorted({m for r in job.results.values() for m in r["warnings"]}):
                log(f"warning: {job.path}: {message}")
        job.results.clear()
        if bar is not None:
            bar.update(1)

    n_workers = workers or default_workers()
    if scheduler is not None:
        executor = _Dask(scheduler)
        n_workers = max(n_workers, sum(executor.client.nthreads().values()))
    elif n_workers <= 1 or (len(jobs) <= 1 and not frames):
        executor = _Inline()
    else:
        executor = _LocalPool(n_workers)

    pending: dict[Any, tuple[int, int | None]] = {}
    try:
        source = tasks()
        exhausted = False
        while pending or not exhausted:
            # Keep a few tasks per worker in flight: memory stays bounded, workers stay busy.
            while not exhausted and len(pending) < 2 * n_workers:
                task = next(source, None)
                if task is None:
                    exhausted = True
                    break
                index, frame, array, axis = task
                try:
                    future = executor.submit(segment_task, array, parts, settings_dict, axis, spacing)
                except Exception as error:  # e.g. a broken process pool
                    if jobs[index].error is None:
                        jobs[index].error = f"could not start: {error}"
                        finish(jobs[index])
                    continue
                pending[future] = (index, frame)
            if not pending:
                continue
            done, _ = executor.wait_any(set(pending))
            for future in done:
                index, frame = pending.pop(future)
                job = jobs[index]
                if job.error is not None:
                    continue
                try:
                    job.results[0 if frame is None else frame] = future.result()
                except Exception as error:
                    where = "" if frame is None else f" (frame {frame})"
                    job.error = f"{error}{where}"
                    finish(job)
                    continue
                if len(job.results) == job.n_tasks:
                    finish(job)
    finally:
        executor.close()
        if bar is not None:
            bar.close()
    return report


def _write_outputs(job: _Job, parts, frames: bool, channel_axis, spacing) -> list[Path]:
    results = [job.results[t] for t in sorted(job.results)]
    if frames:
        foreground = np.stack([r["foreground"] for r in results])
        labels = None if parts is None else np.stack([r["parts"] for r in results])
    else:
        foreground, labels = results[0]["foreground"], results[0]["parts"]
    info = results[0]["metadata"]
    objects = info["settings"]["objects"] != "off"  # each object its own label
    write_labels(job.outputs["foreground"], foreground.astype(np.uint32 if objects else np.uint8))
    written = [job.outputs["foreground"]]
    if parts is not None:
        write_labels(job.outputs["parts"], labels.astype(np.uint16))
        written.append(job.outputs["parts"])
    record = {
        "napari_deepcut_version": info.get("napari_deepcut_version"),
        "input": str(job.path),
        "parts": parts,
        "channel_axis": channel_axis,
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "frames": frames,
        "settings": info["settings"],
    }
    stages = [{k: v for k, v in r["metadata"].items() if k in ("foreground", "parts")} for r in results]
    record["stages"] = stages if frames else stages[0]
    write_json(job.outputs["settings"], record)
    written.append(job.outputs["settings"])
    return written
