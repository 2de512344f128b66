import os
import threading
from pathlib import Path

import numpy as np

from dedup_pipeline.lib.features.image_work import (
    ExtractionSettings,
    ImageFacts,
    ImageFailure,
    extract_chunk,
    read_bytes,
)
from tests.conftest import encoded, smooth_picture


def test_a_chunk_gives_each_file_an_outcome_and_stacks_the_decoded_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded(smooth_picture(1), "JPEG"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    settings = ExtractionSettings(8, ("phash", "ahash"), None, 10**7, mirrored_algorithms=("phash",))
    chunk = extract_chunk([good, broken, tmp_path / "missing.jpg", good], settings)
    kinds = [type(outcome) for outcome in chunk.outcomes]
    assert kinds == [ImageFacts, ImageFailure, ImageFailure, ImageFacts]
    assert "cannot read file" in chunk.outcomes[2].reason
    assert set(chunk.hashes) == {"phash", "ahash", "phash_mirror"}
    assert all(words.shape == (2, 1) for words in chunk.hashes.values())
    assert chunk.thumbnails.shape == (2, 32, 32, 3) and chunk.embeddings is None
    assert np.array_equal(chunk.thumbnails[0], chunk.thumbnails[1])
    assert chunk.outcomes[0].width == 96 and chunk.outcomes[0].format == "JPEG"


def test_read_bytes_reads_whole_files_whatever_their_reported_size(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    (tmp_path / "plain").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert read_bytes(tmp_path / "plain") == data
    assert read_bytes(tmp_path / "empty") == b""
    # a file whose size stat reports as 0 but which has content (as /proc files and pipes do)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_bytes, args=(data,))
    writer.start()
    assert read_bytes(pipe) == data
    writer.join()
