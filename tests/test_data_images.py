"""ImageNet-style data: both layouts, corrupt files, start-up errors, transforms and sharding."""

import logging
import os
import re
import shutil

import numpy as np
import pytest
from fakedata import dataset_of
from PIL import Image

from imagedata import DataError, build_loader, image_split, stratified_subset
from imagedata.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEval,
    ImageTrain,
    Normalize,
    random_resized_crop_box,
    sample_rng,
)

CLASSES = ("cat", "dog", "eel")
BAD = os.path.join("train", "dog", "0_bad.jpg")  # sorts first in its class: index 3


def write_image_tree(root, per_class=3, val_per_class=2, size=(40, 36), corrupt=True, lists=True):
    """Tiny ImageNet-style tree: train/ and val/ class folders (JPEG, PNG, grey and RGBA images),
    one corrupt JPEG in train/dog, and matching train_list.txt / val_list.txt."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for split, n in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            if split == "train" and name == "dog" and corrupt:
                with open(os.path.join(root, BAD), "wb") as f:
                    f.write(b"\xff\xd8\xff\xe0 this is not a JPEG")
                lines[split].append(f"{BAD} {label}")
            for i in range(n):
                pixels = (rng.random((size[1], size[0], 3)) * 60 + 80 * label).astype(np.uint8)
                image = Image.fromarray(pixels)
                ext = ".png" if i % 2 else ".jpg"
                if i == 1:
                    image = image.convert("RGBA")
                elif i == 2:
                    image = image.convert("L")
                rel = os.path.join(split, name, f"{i + 1}{ext}")
                image.save(os.path.join(root, rel))
                lines[split].append(f"{rel} {label}")
    if lists:
        for split, rows in lines.items():
            with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
                f.write("\n".join(rows) + "\n")
    return root


def _cfg(root, layout="auto", **data):
    d = {"name": "imagenet", "image_dir": root and str(root), "layout": layout, "resolution": 32, "val_resize": 36}
    d.update(data)
    return {"data": d, "model": {"in_channels": 3}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_image_tree(str(tmp_path_factory.mktemp("imgs")))


def test_folder_layout_counts_labels_and_order(tree):
    paths, labels, classes = image_split(tree, "train", "folders")
    assert classes == list(CLASSES)
    assert labels == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert paths[3] == os.path.join(tree, BAD)
    assert [os.path.basename(p) for p in paths[:3]] == ["1.jpg", "2.png", "3.jpg"]


def test_list_layout_matches_folders_and_auto_prefers_lists(tree):
    folders = image_split(tree, "val", "folders")
    lists = image_split(tree, "val", "lists")
    assert lists[0] == folders[0] and list(lists[1]) == list(folders[1])
    assert lists[2] == ["0", "1", "2"]
    assert dataset_of(_cfg(tree, "auto"), "train").paths == image_split(tree, "train", "lists")[0]


def test_corrupt_image_is_replaced_counted_and_logged_once(tree, caplog):
    ds = dataset_of(_cfg(tree, "folders"), "train", augment=True)
    loader = build_loader(ds, batch_size=4, shuffle=False, drop_last=False, num_workers=0, seed=1)
    with caplog.at_level(logging.WARNING, logger="imagedata"):
        for epoch in range(2):
            loader.set_epoch(epoch)
            labels = np.concatenate([y.numpy() for _, y in loader])
            # the corrupt file (index 3, a dog) is replaced by the next sample, also a dog
            assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
            assert loader.bad_count == 1
    warnings = [r.getMessage() for r in caplog.records if "unreadable image" in r.getMessage()]
    assert warnings == [f"unreadable image {os.path.join(tree, BAD)} replaced by the next readable sample"]
    image, label, bad = ds[3]
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8 and label == 1 and bad == 3
    # the replacement is the next file, augmented with the draw of the index asked for
    np.testing.assert_array_equal(image, ds.transform(ds._load(4), sample_rng(0, 0, 3)))


def test_bad_count_survives_worker_processes(tree):
    ds = dataset_of(_cfg(tree, "lists"), "train")
    loader = build_loader(ds, batch_size=3, shuffle=True, drop_last=False, num_workers=1, seed=0)
    n = sum(len(y) for _, y in loader)
    assert n == len(ds) == 10 and loader.bad_count == 1


def test_startup_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"image directory {missing} does not exist"):
        dataset_of(_cfg(missing), "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=f"image directory {tmp_path}/empty/train has no class folders"):
        dataset_of(_cfg(tmp_path / "empty"), "train")
    (tmp_path / "bare" / "train" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="train has class folders but no image files"):
        dataset_of(_cfg(tmp_path / "bare"), "train")
    flat = tmp_path / "flat" / "val"
    flat.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="1 images lie directly in it.*val_list.txt"):
        dataset_of(_cfg(tmp_path / "flat"), "val")
    with pytest.raises(DataError, match=f"{tmp_path}/empty has neither val_list.txt nor a val/ directory"):
        dataset_of(_cfg(tmp_path / "empty"), "val")
    with pytest.raises(DataError, match="data.image_dir is not set"):
        dataset_of(_cfg(None), "train")


def test_list_file_errors_point_at_the_line(tmp_path):
    (tmp_path / "train_list.txt").write_text("a.jpg 0\nb.jpg x\n")
    with pytest.raises(DataError, match=r"train_list.txt:2: label 'x' is not an integer"):
        dataset_of(_cfg(tmp_path, "lists"), "train")
    (tmp_path / "train_list.txt").write_text("a.jpg 0\n")
    with pytest.raises(DataError, match=f"first listed image {tmp_path}/a.jpg does not exist"):
        dataset_of(_cfg(tmp_path, "lists"), "train")
    (tmp_path / "train_list.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no images"):
        dataset_of(_cfg(tmp_path, "lists"), "train")
    with pytest.raises(DataError, match="data.layout must be one of auto, folders, lists, got 'tree'"):
        dataset_of(_cfg(tmp_path, "tree"), "train")


def test_normalisation_of_a_flat_image_by_hand():
    image = Image.new("RGB", (50, 40), (51, 102, 204))
    transform = ImageEval(32, 36)
    pixels = transform(image, np.random.default_rng(0))
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.uint8
    out = Normalize(transform.mean, transform.std)(pixels[None]).numpy()[0]
    assert out.dtype == np.float32
    for c, v in enumerate((51, 102, 204)):
        np.testing.assert_allclose(out[c], (v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], rtol=1e-5)


def test_eval_transform_is_resize_then_centre_crop():
    # a 64x48 image whose columns encode x: after resizing the shorter side 48 -> 36 (x scale 0.75)
    # and centre-cropping 32, output column j shows source column about (j + 8) / 0.75
    x = np.tile(np.arange(64, dtype=np.uint8) * 3, (48, 1))
    image = Image.fromarray(np.stack([x] * 3, axis=2))
    out = ImageEval(32, 36)(image, None)
    source = (np.arange(32) + 8 + 0.5) / 0.75 - 0.5
    np.testing.assert_allclose(out[0, 16].astype(float), source * 3, atol=3.5)


def test_random_resized_crop_box_bounds_and_fallback_by_hand():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(60, 40, rng)
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60
        assert 0.08 * 2400 * 0.8 <= h * w <= 2400
    # an impossible scale forces the fallback: widest centred crop with aspect ratio <= 4/3
    assert random_resized_crop_box(100, 10, rng, scale=(2.0, 3.0)) == (0, 43, 10, 13)
    assert random_resized_crop_box(10, 100, rng, scale=(2.0, 3.0)) == (43, 0, 13, 10)
    assert random_resized_crop_box(30, 30, rng, scale=(2.0, 3.0)) == (0, 0, 30, 30)


def test_augmentation_is_a_function_of_seed_epoch_and_index(tree):
    ds = dataset_of(_cfg(tree, "folders"), "train", augment=True)
    assert isinstance(ds.transform, ImageTrain)
    a = ds[(0, 1, 7)][0]
    np.testing.assert_array_equal(a, ds[(0, 1, 7)][0])
    assert not np.array_equal(a, ds[(0, 2, 7)][0])
    assert not np.array_equal(a, ds[(0, 1, 8)][0])


def test_shards_and_shuffles(tree):
    ds = dataset_of(_cfg(tree, "folders", train_subset=None), "train")

    def order(rank, epoch, seed, **kw):
        loader = build_loader(ds, 2, num_workers=0, seed=seed, num_replicas=2, rank=rank, **kw)
        loader.set_epoch(epoch)
        return [i for batch in loader.sampler for i, _, _ in batch]

    train = dict(shuffle=True, drop_last=False)
    r0, r1 = order(0, 0, 0, **train), order(1, 0, 0, **train)
    assert len(r0) == len(r1) == 5 and sorted(r0 + r1) == list(range(10))
    assert order(0, 0, 0, **train) == r0  # reproducible
    assert order(0, 1, 0, **train) != r0 and order(0, 0, 1, **train) != r0  # epoch and seed matter
    evaluation = dict(shuffle=False, drop_last=False, exact_shards=True)
    assert order(0, 0, 0, **evaluation) == [0, 2, 4, 6, 8] and order(1, 0, 0, **evaluation) == [1, 3, 5, 7, 9]
    with pytest.raises(DataError, match="exact_shards is for evaluation"):
        build_loader(ds, 2, shuffle=True, drop_last=False, exact_shards=True)


def test_resumed_epoch_starts_at_its_batch_without_loading_the_ones_before(tree):
    ds = dataset_of(_cfg(tree, "folders", train_subset=None), "train", augment=True)
    loads = []
    real_getitem = type(ds).__getitem__

    class Counting(type(ds)):
        def __getitem__(self, key):
            loads.append(key)
            return real_getitem(self, key)

    ds.__class__ = Counting
    loader = build_loader(ds, 3, shuffle=True, drop_last=True, num_workers=0, seed=5)
    loader.set_epoch(2)
    whole = [(x.numpy(), y.numpy()) for x, y in loader]
    assert len(whole) == len(loader) == 3 and len(loads) == 9
    loads.clear()
    loader.set_epoch(2, start_batch=2)
    rest = [(x.numpy(), y.numpy()) for x, y in loader]
    assert len(loads) == 3 and len(loader) == 3  # one batch loaded; the length is still the epoch's
    assert len(rest) == 1
    np.testing.assert_array_equal(rest[0][0], whole[2][0])  # same images, same augmentation draws
    np.testing.assert_array_equal(rest[0][1], whole[2][1])
    loader.set_epoch(3)  # the next epoch starts at its beginning again
    assert len(list(loader)) == 3
    with pytest.raises(DataError, match="start_batch 4 is outside the epoch's 3 batches"):
        loader.set_epoch(2, start_batch=4)


def test_stratified_subset_by_hand():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    # exact shares for 4 of 10: 2.4, 1.2, 0.4 -> floors 2, 1, 0; the leftover place goes to class 2
    idx = stratified_subset(labels, 4, seed=3)
    assert np.bincount(labels[idx]).tolist() == [2, 1, 1]
    np.testing.assert_array_equal(idx, stratified_subset(labels, 4, seed=3))
    assert len({tuple(stratified_subset(labels, 4, seed=s)) for s in range(10)}) > 1
    np.testing.assert_array_equal(stratified_subset(labels, 50, seed=0), np.arange(10))
    with pytest.raises(DataError, match="subset size must be positive, got 0"):
        stratified_subset(labels, 0, seed=0)


def test_image_subset_from_config(tree):
    ds = dataset_of(_cfg(tree, "folders", train_subset=6, subset_seed=4), "train")
    again = dataset_of(_cfg(tree, "folders", train_subset=6, subset_seed=4), "train")
    assert len(ds) == 6 and ds.paths == again.paths
    assert np.bincount(ds.labels).tolist() == [2, 2, 2]


def test_holdout_moves_stratified_training_images_to_validation(tree):
    train_all = dataset_of(_cfg(tree, "folders"), "train")
    val_all = dataset_of(_cfg(tree, "folders"), "val")
    train = dataset_of(_cfg(tree, "folders", holdout=3), "train")
    val = dataset_of(_cfg(tree, "folders", holdout=3), "val")
    # 3 of the class counts (3, 4, 3): shares 0.9, 1.2, 0.9 -> floors 0, 1, 0; the 2 leftover places
    # go to the largest fractional parts (classes 0 and 2): one image of each class is held out
    held = val.paths[len(val_all):]
    assert val.paths[:len(val_all)] == val_all.paths and len(held) == 3
    assert np.bincount(val.labels[len(val_all):]).tolist() == [1, 1, 1]
    assert sorted(train.paths + held) == sorted(train_all.paths) and not set(train.paths) & set(held)
    assert [train_all.labels[train_all.paths.index(p)] for p in held] == val.labels[len(val_all):].tolist()
    # held-out images get the evaluation transform in the validation split
    i = len(val_all)
    image, label, _ = val[i]
    expected, _, _ = dataset_of(_cfg(tree, "folders"), "train", augment=False)[train_all.paths.index(held[0])]
    np.testing.assert_array_equal(image, expected)
    # the training subset is drawn from what is left
    sub = dataset_of(_cfg(tree, "folders", holdout=3, train_subset=4), "train")
    assert len(sub) == 4 and set(sub.paths) <= set(train.paths)
    with pytest.raises(DataError, match="data.holdout 10: the training split has 10 images"):
        dataset_of(_cfg(tree, "folders", holdout=10), "val")


def test_holdout_refuses_splits_with_different_classes(tree, tmp_path):
    # list files name classes by label: a val list without the last label has one class fewer
    root = tmp_path / "copy"
    shutil.copytree(tree, root)
    val_list = root / "val_list.txt"
    rows = [r for r in val_list.read_text().splitlines() if not r.endswith(" 2")]
    val_list.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="data.holdout: the training and validation splits have different classes"):
        dataset_of(_cfg(str(root), "lists", holdout=3), "val")


def test_class_subset_keeps_and_relabels_in_the_given_order(tree):
    every = dataset_of(_cfg(tree, "folders"), "train")
    ds = dataset_of(_cfg(tree, "folders", classes=[2, 0]), "train")
    # eel (3 images) becomes label 0, cat (3 images) label 1; dog's 4 files are gone
    assert ds.classes == ["eel", "cat"]
    assert ds.labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert ds.paths == [p for p in every.paths if os.sep + "cat" + os.sep in p or os.sep + "eel" + os.sep in p]
    # holdout and subsets apply within the kept classes; the validation split is filtered the same way
    val = dataset_of(_cfg(tree, "folders", classes=[2, 0], holdout=2), "val")
    assert val.classes == ["eel", "cat"] and len(val) == 2 * 2 + 2
    assert all(os.sep + "dog" + os.sep not in p for p in val.paths)
    cfg = _cfg(tree, "folders", classes=[2, 0])
    cfg["model"]["num_classes"] = 1  # labels 0 and 1 need two outputs
    with pytest.raises(DataError, match="the train split has labels up to 1 but model.num_classes is 1: set "
                                        "model.num_classes, or keep fewer classes with data.classes"):
        dataset_of(cfg, "train")
    for bad in ([0, 0], [3], []):
        expected = rf"data.classes {re.escape(str(bad))}: expected distinct class indices in 0\.\.2$"
        with pytest.raises(DataError, match=expected):
            dataset_of(_cfg(tree, "folders", classes=bad), "train")
    for bad in (2, "0,2", [0.5]):
        with pytest.raises(DataError, match=rf"data.classes {re.escape(repr(bad))}: expected a list of class indices"):
            dataset_of(_cfg(tree, "folders", classes=bad), "train")
