import polars as pl
import pytest

from dedup_pipeline.defs.metadata import JoinProgressLog, ProgressLogger, plots, timed
from dedup_pipeline.lib.reporting.histograms import histograms_of


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


def test_a_join_logs_its_stages_and_the_alignment_as_it_goes() -> None:
    log = RecordingLog()
    progress = JoinProgressLog(log, every=3600, bar=False)
    progress.stage("judging 10 candidate pairs")
    for done in (0, 4, 8, 10):
        progress.aligned(done, 10)
    progress.aligned(0, 0)  # nothing to align: said so
    assert log.lines[0] == "judging 10 candidate pairs"
    assert len(log.lines) == 3 and log.lines[1].startswith("verifier aligned 10/10 pairs")
    assert log.lines[2].startswith("verifier aligned 0/0 pairs")


def test_plots_are_markdown_pictures_with_their_captions() -> None:
    histogram = histograms_of(pl.DataFrame({"hamming_phash": [0, 3, 30]}), {"hamming_phash": 4})[0]
    markdown = plots([histogram]).value
    assert markdown.startswith("![nearest image by phash](data:image/png;base64,")
    assert markdown.endswith("2 of 3 sampled images have their nearest image at or below the threshold 4.")
    assert plots([]).value == "nothing to plot"
