"""Open an expert store only after checking its files and the data it was trained on.

Every expert file's sha256 must equal the one in `manifest.json`. Hashing a multi-GB store on
every open would cost minutes, so hashes are remembered per version of each file
(`ltdd.hashcache`): a store is hashed once when it is written or first opened, and later opens
cost one `stat` per file, while any rewrite of a file is hashed (and caught) again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ltdd.errors import UserError
from ltdd.experts.config import canonical_hash
from ltdd.experts.store import MANIFEST, TrajectoryStore
from ltdd.hashcache import remembered_sha256

log = logging.getLogger(__name__)

# The parts of a store's data fingerprint a user can name, in the order reported.
DATA_KEYS = ("dataset", "imbalance_factor", "seed", "train_counts", "val_counts", "index_sha256")


def data_summary(info: dict) -> dict:
    """What a manifest records of the data it was trained on (for `check_data`'s message)."""
    return {k: info.get(k) for k in DATA_KEYS}


def verify_checksums(store: TrajectoryStore) -> None:
    """Every expert file exists, matches its manifest sha256 and holds the kept epochs."""
    for entry in store.manifest["experts"]:
        path = store.directory / entry["file"]
        if not path.is_file():
            raise UserError(
                f"{path}: missing from the expert store; run `ltdd experts` again to retrain it"
            )
        if remembered_sha256(path) != entry["sha256"]:
            raise UserError(
                f"{path}: sha256 differs from {store.directory / MANIFEST} (the file changed "
                "after the store was written); delete it and run `ltdd experts` again"
            )
    store.verify_headers()


def check_data(store: TrajectoryStore, info: dict, fingerprint: str) -> None:
    """Refuse a store trained on other data than the data at hand (`info`, its fingerprint)."""
    if store.manifest.get("data_fingerprint") == fingerprint:
        return
    trained = store.manifest.get("data") or {
        "dataset": store.manifest.get("dataset"),
        "train_counts": store.manifest.get("train_counts"),
    }
    differs = [
        f"{k} {trained[k]!r} there, {info.get(k)!r} here"
        for k in DATA_KEYS
        if k in trained and trained[k] != info.get(k)
    ]
    what = "; ".join(differs[:2]) if differs else "the preprocessing or split differs"
    raise UserError(
        f"{store.directory}: its experts were trained on other data ({what}); "
        "train experts on this data or point at the store made for it"
    )


def open_store(directory: str | Path, info: dict | None = None) -> TrajectoryStore:
    """A checked TrajectoryStore: its files always, its training data when `info` is given."""
    store = TrajectoryStore(directory)
    verify_checksums(store)
    if info is not None:
        check_data(store, info, canonical_hash(info))
    return store
