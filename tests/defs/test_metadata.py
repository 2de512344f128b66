import pytest

from dedup_pipeline.defs.metadata import ProgressLogger, timed


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_timed_records_seconds_and_peak_memory() -> None:
    metadata: dict[str, object] = {}
    with timed(metadata, "extract_seconds"):
        pass
    assert set(metadata) == {"extract_seconds", "extract_peak_rss_mb"}
    assert metadata["extract_peak_rss_mb"] > 10


def test_progress_logs_the_end_and_draws_a_bar_in_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    log = RecordingLog()
    progress = ProgressLogger(log, every=3600, bar=True)
    for done in range(1, 101):
        progress(done, 100)
    assert len(log.lines) == 1 and log.lines[0].startswith("processed 100/100 images")
    assert "100/100" in capsys.readouterr().err
