"""Results shards: strided rank shares, fsynced appends, torn-line repair, manifest pinning, ordered merge."""

import json
import os

import pytest

from encoding import ArchEntry
from evaluate.results_store import ResultsStore, ResultsStoreError, rank_share, read_shard

ENTRIES = [ArchEntry(f"arch{i}", f"code{i:02d}") for i in range(1, 8)]
SETTINGS = {"calibration": {"mode": "none"}, "eval": {"subset": 100}}


def record(entry, top1=0.5):
    return {"id": entry.id, "code": entry.code, "top1": top1, "top5": 0.9, "loss": 1.25,
            "calibration": "none", "seconds": 0.1}


def fill(store, rank, entries):
    with store.open(rank):
        for e in entries:
            store.append(record(e))


def test_rank_share_is_strided_and_covers_every_item_once():
    items = list(range(10))
    shares = [rank_share(items, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(x for s in shares for x in s) == items
    assert rank_share(items, 0, 1) == items
    assert rank_share(items[:2], 2, 3) == []


@pytest.mark.parametrize("rank,world", [(2, 2), (-1, 2), (0, 0)])
def test_rank_share_rejects_impossible_ranks(rank, world):
    with pytest.raises(ValueError, match=f"rank {rank} is not in range for world size {world}"):
        rank_share([1, 2], rank, world)


def test_append_writes_one_complete_line_per_record(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    fill(store, 0, ENTRIES[:2])
    lines = (tmp_path / "shard-00000.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["arch1", "arch2"]
    assert list(json.loads(lines[0])) == ["id", "code", "top1", "top5", "loss", "calibration", "seconds"]


def test_torn_last_line_is_dropped_and_truncated_by_its_owner(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    fill(store, 1, ENTRIES[:2])
    path = tmp_path / "shard-00001.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"id": "arch3", "code": "co')
    records, valid = read_shard(path)
    assert [r["id"] for r in records] == ["arch1", "arch2"] and valid == len(good)
    assert set(store.records()) == {"arch1", "arch2"}
    assert store.repair(1) == len(b'{"id": "arch3", "code": "co')
    assert path.read_bytes() == good
    assert store.repair(1) == 0


def test_complete_json_without_newline_counts_as_torn(tmp_path):
    path = tmp_path / "shard-00000.jsonl"
    path.write_bytes(json.dumps(record(ENTRIES[0])).encode() + b"\n" + json.dumps(record(ENTRIES[1])).encode())
    records, _ = read_shard(path)
    assert [r["id"] for r in records] == ["arch1"]


def test_bad_line_in_the_middle_is_an_error_not_skipped(tmp_path):
    path = tmp_path / "shard-00000.jsonl"
    path.write_bytes(b"not json\n" + json.dumps(record(ENTRIES[1])).encode() + b"\n")
    with pytest.raises(ResultsStoreError, match="line 1 is not a valid record and is not the last line"):
        read_shard(path)


def test_pending_skips_ids_done_by_any_rank_even_after_a_world_size_change(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    fill(store, 0, [ENTRIES[0], ENTRIES[2]])  # a world-2 run's rank 0 did arch1, arch3
    fill(store, 1, [ENTRIES[1]])  # its rank 1 did arch2
    assert [e.id for e in store.pending(0, 1)] == ["arch4", "arch5", "arch6", "arch7"]
    assert [e.id for e in store.pending(0, 3)] == ["arch4", "arch7"]
    assert [e.id for e in store.pending(2, 3)] == ["arch6"]
    assert [e.id for e in store.missing()] == ["arch4", "arch5", "arch6", "arch7"]


def test_merge_waits_for_every_id_then_writes_list_order_once(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    fill(store, 1, ENTRIES[1::2])
    assert store.merge() is None and not (tmp_path / "results.json").exists()
    fill(store, 0, ENTRIES[0::2])
    fill(store, 0, ENTRIES[:1])  # a duplicate record (e.g. two overlapping runs): first one wins
    path = store.merge()
    merged = json.loads(open(path).read())
    assert [r["id"] for r in merged] == [e.id for e in ENTRIES]
    first = open(path, "rb").read()
    assert store.merge() == path and open(path, "rb").read() == first
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_records_of_another_list_are_refused(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    fill(store, 0, ENTRIES[:1])
    other = ResultsStore(tmp_path, [ArchEntry("arch1", "different")] + ENTRIES[1:])
    with pytest.raises(ResultsStoreError, match="record for 'arch1' has code 'code01' but the list has 'different'"):
        other.records()
    stranger = ResultsStore(tmp_path, ENTRIES[1:])
    with pytest.raises(ResultsStoreError, match="record for id 'arch1', which is not in the architecture list"):
        stranger.records()


def test_manifest_pins_list_and_settings_once_a_record_exists(tmp_path):
    store = ResultsStore(tmp_path, ENTRIES)
    store.check_manifest({"calibration": {"mode": "typo"}})
    store.check_manifest(SETTINGS)  # no record yet: a failed start's manifest is replaced
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"] == SETTINGS
    fill(store, 0, ENTRIES[:1])
    store.check_manifest(dict(SETTINGS))  # same settings: fine, file unchanged
    changed = dict(SETTINGS, eval={"subset": 50})
    want = r"other settings \(eval.subset: was 100, now 50\)"  # the leaf that differs, not the whole section
    with pytest.raises(ResultsStoreError, match=want):
        store.check_manifest(changed)
    with pytest.raises(ResultsStoreError, match="results of a different architecture list"):
        ResultsStore(tmp_path, ENTRIES[:3]).check_manifest(SETTINGS)


def test_duplicate_ids_in_the_list_are_refused(tmp_path):
    with pytest.raises(ResultsStoreError, match="duplicate ids"):
        ResultsStore(tmp_path, ENTRIES + ENTRIES[:1])
