"""Batch runs: a dask.distributed cluster and a local process pool give what one process gives."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_deepcut.batch import run_batch, segment_task
from napari_deepcut.settings import Settings

from _synthetic import disk_image, one_torch_thread, to_rgb  # noqa: F401 (fixture)

SETTINGS = Settings(epochs=20, n_segments=60, seed=5)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(3):
        grey, _ = disk_image(centre=(20 + 3 * i, 24 + 2 * i), seed=i)
        path = tmp_path / "in" / f"img{i}.tif"
        path.parent.mkdir(exist_ok=True)
        tifffile.imwrite(path, to_rgb(grey) if i == 1 else grey, photometric="rgb" if i == 1 else "minisblack")
        paths.append(path)
    movie = tmp_path / "in" / "movie.tif"
    grey, _ = disk_image()
    tifffile.imwrite(movie, np.stack([np.roll(grey, 5 * t, axis=1) for t in range(3)]), photometric="minisblack")
    return paths, movie


def _outputs(folder, stems):
    return {s: (tifffile.imread(folder / f"{s}_foreground.tif"), tifffile.imread(folder / f"{s}_parts.tif")) for s in stems}


def test_dask_cluster_matches_this_process(images, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths, movie = images
    stems = [p.stem for p in paths]
    local = run_batch(paths, tmp_path / "local", parts=2, settings=SETTINGS, workers=1, show_progress=False)
    assert local.ok and len(local.written) == 3
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        remote = run_batch(paths, tmp_path / "dask", parts=2, settings=SETTINGS, scheduler=client, show_progress=False)
        frames = run_batch([movie], tmp_path / "frames", parts=2, settings=SETTINGS, frames=True, scheduler=cluster.scheduler_address, show_progress=False)
    assert remote.ok and frames.ok
    expected, got = _outputs(tmp_path / "local", stems), _outputs(tmp_path / "dask", stems)
    for stem in stems:
        assert np.array_equal(expected[stem][0], got[stem][0])
        assert np.array_equal(expected[stem][1], got[stem][1])
    # one task per frame, stacked back in order: frame t equals segmenting frame t alone
    stack = tifffile.imread(tmp_path / "frames" / "movie_foreground.tif")
    series = tifffile.imread(movie)
    assert stack.shape == series.shape
    for t in range(3):
        alone = segment_task(series[t], 2, SETTINGS.as_dict(), None, None)
        assert np.array_equal(stack[t], alone["foreground"])


def test_a_failure_on_the_cluster_names_the_file(images, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths, _ = images
    bad = tmp_path / "in" / "nan.tif"
    tifffile.imwrite(bad, np.full((20, 20), np.nan, np.float32))
    lines = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        report = run_batch([bad, paths[0]], tmp_path / "out", settings=SETTINGS, scheduler=cluster.scheduler_address, show_progress=False, log=lines.append)
    assert [p.name for p, _ in report.failed] == ["nan.tif"] and "NaN" in report.failed[0][1]
    assert any("nan.tif" in line for line in lines)
    assert (tmp_path / "out" / f"{paths[0].stem}_foreground.tif").exists()


def test_local_process_pool_matches_this_process(images, tmp_path):
    paths, _ = images
    local = run_batch(paths[:2], tmp_path / "one", parts=2, settings=SETTINGS, workers=1, show_progress=False)
    pooled = run_batch(paths[:2], tmp_path / "pool", parts=2, settings=SETTINGS, workers=2, show_progress=False)
    assert local.ok and pooled.ok
    stems = [p.stem for p in paths[:2]]
    expected, got = _outputs(tmp_path / "one", stems), _outputs(tmp_path / "pool", stems)
    for stem in stems:
        assert np.array_equal(expected[stem][0], got[stem][0]) and np.array_equal(expected[stem][1], got[stem][1])


def test_outputs_with_the_same_name_are_refused(tmp_path):
    grey, _ = disk_image()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "same.tif", grey)
    report = run_batch([tmp_path / "a" / "same.tif", tmp_path / "b" / "same.tif"], tmp_path / "out", settings=SETTINGS, workers=1, show_progress=False, log=lambda line: None)
    assert len(report.written) == 1 and "overwrite those of" in report.failed[0][1]
