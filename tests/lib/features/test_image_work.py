import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from dedup_pipeline.lib.features.image_work import (
    ExtractionSettings,
    ImageFacts,
    ImageFailure,
    decode_file,
    embed_in_batches,
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
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    chunk = extract_chunk([good, broken, tmp_path / "missing.jpg", good, empty], settings)
    kinds = [type(outcome) for outcome in chunk.outcomes]
    assert kinds == [ImageFacts, ImageFailure, ImageFailure, ImageFacts, ImageFailure]
    assert "cannot read file" in chunk.outcomes[2].reason
    assert chunk.outcomes[4].reason == "empty file (0 bytes)"
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


def test_an_embedding_does_not_depend_on_the_batch_it_was_computed_in() -> None:
    from dedup_pipeline.lib.features.embedding import EfficientNetLite0

    embedder = EfficientNetLite0(64)
    pictures = [np.asarray(smooth_picture(seed, size=(64, 64))) for seed in range(7)]
    together = embed_in_batches(embedder, pictures, batch_size=4)
    one_by_one = np.concatenate([embed_in_batches(embedder, [picture], batch_size=4) for picture in pictures])
    assert np.array_equal(together, one_by_one)  # bit for bit: a drop's image gets a from-scratch run's embedding


def test_a_file_that_blocks_its_reader_is_recorded_at_the_time_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.jpg"  # a read that never ends, as on a stalled network share
    os.mkfifo(fifo)
    settings = ExtractionSettings(
        hash_size=8, hash_algorithms=("phash",), embedding_size=None, max_pixels=10**8, file_seconds=0.3
    )
    failure = decode_file(str(fifo), settings)
    assert isinstance(failure, ImageFailure)
    assert failure.reason == "reading and decoding took longer than the per-file time limit (0.3 s)"


def test_a_file_without_read_permission_is_recorded_with_the_reason(tmp_path: Path) -> None:
    """Root reads every file, so as root the read runs in a child process acting as user nobody."""
    folder = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        locked = folder / "locked.png"
        locked.write_bytes(encoded(smooth_picture(1), "PNG"))
        locked.chmod(0o000)
        code = (
            "import os, sys; from dedup_pipeline.lib.features.image_work import ExtractionSettings, decode_file; "
            "os.geteuid() == 0 and os.seteuid(65534); "
            "print(decode_file(sys.argv[1], ExtractionSettings(8, ('phash',), None, 10**8)).reason)"
        )
        result = subprocess.run([sys.executable, "-c", code, str(locked)], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "cannot read file: Permission denied"
    finally:
        shutil.rmtree(folder)
