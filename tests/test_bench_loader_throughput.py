"""bench/loader_throughput.py runs both pipelines for each worker count and reports images/s."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loader_throughput_measures_both_pipelines_per_worker_count(tmp_path):
    spec = importlib.util.spec_from_file_location("loader_throughput", os.path.join(ROOT, "bench", "loader_throughput.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "lt.json"
    assert bench.main(["--workers", "0,1,16", "--max-workers", "1", "--images", "24", "--size", "80x60",
                       "--batch-size", "4", "--batches", "3", "--dir", str(tmp_path / "jpegs"), "--json", str(out),
                       "data.resolution=32", "data.val_resize=36"]) == 0
    report = json.loads(out.read_text())
    assert [(r["pipeline"], r["workers"]) for r in report["rows"]] == [("train", 0), ("train", 1), ("eval", 0),
                                                                        ("eval", 1)]
    assert all(r["images_per_s"] > 0 and r["first_batch_s"] > 0 for r in report["rows"])
    jpegs = [f for _, _, files in os.walk(tmp_path / "jpegs" / "train") for f in files]
    assert len(jpegs) == 24 and all(f.endswith(".jpg") for f in jpegs)
