"""Issue 36 item 13: `data.num_workers: auto` (the rank's share of the cores, less one, 1..16) and
`data.jpeg_draft` (evaluation resizes decode JPEGs at a reduced scale first; off: today's pixels)."""

import os

import numpy as np
import pytest
from fakedata import data_settings
from PIL import Image

from imagedata import DataError, build_dataset
from imagedata.settings import MAX_AUTO_WORKERS, worker_count, workers_flag
from imagedata.transforms import ImageEval, sample_rng
from runtime import cpu_speed


@pytest.mark.parametrize("cores,local,expected", [
    (48, "4", 11),       # 12 cores per rank, one left for the rank's own process
    (2, None, 1),        # this machine, one process
    (8, "8", 1),         # one core per rank: still one worker, so decoding overlaps the steps
    (128, "1", MAX_AUTO_WORKERS),
    (96, "8", 11),
    (5, "2", 1),         # 2 cores per rank (5 // 2)
])
def test_auto_workers_are_the_ranks_share_of_the_cores_less_one(cores, local, expected):
    env = {} if local is None else {"PADDLE_LOCAL_SIZE": local}
    assert worker_count("auto", environ=env, cpu_count=cores) == expected


def test_auto_reads_the_affinity_and_the_launchers_local_size(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(24)))
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "2")
    assert worker_count("auto") == 11
    assert data_settings({"num_workers": "auto"}).num_workers == 11  # resolved when the section is read
    monkeypatch.delenv("PADDLE_LOCAL_SIZE")
    assert worker_count("auto") == MAX_AUTO_WORKERS  # 23 would be more than decoding needs
    # OMP_NUM_THREADS is the same share (one function computes both)
    env = {"PADDLE_LOCAL_SIZE": "3"}
    assert cpu_speed.default_threads(env) == "8" and cpu_speed.cores_per_process(env) == 8


def test_an_integer_still_works_and_bad_values_are_refused():
    assert worker_count(0) == 0 and worker_count(5) == 5 and data_settings({"num_workers": 3}).num_workers == 3
    for bad in (-1, "8", 2.0, True, None):
        with pytest.raises(DataError, match=r"^data.num_workers must be an integer >= 0 or auto, got "):
            worker_count(bad)
    assert workers_flag("auto") == "auto" and workers_flag("4") == 4
    with pytest.raises(ValueError):
        workers_flag("some")


def test_the_flags_take_auto():
    from supernet import standalone

    args = standalone.parse_args(["run", "--arch", "x", "--num_workers", "auto"])
    assert args.cfg__data__num_workers == "auto"


# --- JPEG draft decoding for evaluation resizes ----------------------------------------------------

@pytest.fixture(scope="module")
def big_jpeg_tree(tmp_path_factory):
    """val/a/big.jpg (1200 x 900, smooth with mild noise) and val/a/small.png (300 x 280)."""
    root = tmp_path_factory.mktemp("draft")
    os.makedirs(root / "val" / "a")
    yy, xx = np.mgrid[0:900, 0:1200].astype(np.float32)
    rng = np.random.default_rng(0)
    pixels = np.stack([128 + 100 * np.sin(xx / 90.0), 128 + 100 * np.cos(yy / 70.0), (xx + yy) / 2100 * 255], -1)
    pixels = np.clip(pixels + rng.normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(root / "val" / "a" / "big.jpg", quality=92)
    Image.fromarray(pixels[:280, :300]).save(root / "val" / "a" / "small.png")
    return str(root)


def _val(root, draft):
    return build_dataset(data_settings({"image_dir": str(root), "jpeg_draft": draft, "resolution": 224,
                                        "val_resize": 256}), "val")


def test_with_draft_off_the_pixels_are_todays_full_decodes(big_jpeg_tree):
    dataset = _val(big_jpeg_tree, False)
    assert dataset.draft is None and dataset._load(0).size == (1200, 900)
    for i, path in enumerate(dataset.paths):  # the independent route: open, convert, ImageEval
        with Image.open(path) as image:
            expected = ImageEval(224, 256)(image.convert("RGB"), sample_rng(0, 0, i))
        np.testing.assert_array_equal(dataset[i][0], expected)


def test_with_draft_on_a_jpeg_decodes_reduced_before_the_resize(big_jpeg_tree):
    dataset = _val(big_jpeg_tree, True)
    assert dataset.draft == (256, 256)
    big = dataset.paths.index(os.path.join(big_jpeg_tree, "val", "a", "big.jpg"))
    # 1200 x 900 over a 256 target: scale 1/2 (1/4 would give 225 < 256 rows), both sides stay >= 256
    assert dataset._load(big).size == (600, 450)
    assert dataset._load(1 - big).size == (300, 280)  # a PNG decodes whole
    full = _val(big_jpeg_tree, False)
    drafted, whole = dataset[big][0].astype(np.int16), full[big][0].astype(np.int16)
    assert drafted.shape == whole.shape == (3, 224, 224)
    assert not np.array_equal(drafted, whole)  # the draft did change the decode
    diff = np.abs(drafted - whole)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12  # ... by little after the resize
    np.testing.assert_array_equal(dataset[1 - big][0], full[1 - big][0])
    # subsets (evaluation subsets, the cache's gather) keep the draft
    assert dataset.subset([big]).draft == (256, 256)
    assert build_dataset(data_settings({"image_dir": big_jpeg_tree, "jpeg_draft": True}), "val",
                         augment=False).draft == (256, 256)
