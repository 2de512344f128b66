from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.lib.search.lookup import StoreNotReady, stored_duplicates
from dedup_pipeline.lib.storage.store import Store


def test_a_check_before_the_first_join_says_the_store_is_not_ready(tmp_path: Path) -> None:
    database = tmp_path / "db.duckdb"
    with pytest.raises(StoreNotReady, match="no store beside"):
        stored_duplicates([tmp_path / "x.png"], database)
    Store.beside(database).fix_settings(
        {"hash_size": 8, "hash_algorithms": ["phash"], "embedding_size": None, "max_pixels": 10**8}
    )
    duckdb.connect(str(database)).close()  # a first run has created the database, not yet its thresholds
    with pytest.raises(StoreNotReady, match="first run still under way"):
        stored_duplicates([tmp_path / "x.png"], database)
