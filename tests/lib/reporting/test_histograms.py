import io
import xml.etree.ElementTree as ElementTree

import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.lib.reporting.histograms import HEIGHT, WIDTH, histograms_of, limits_of, png, svg
from dedup_pipeline.lib.search.criteria import MatchThresholds

SAMPLE = pl.DataFrame(
    {
        "image_id": [1, 2, 3, 4, 5],
        "hamming_phash": [0, 0, 1, 20, 25],
        "hamming_phash_partner": [2, 1, 2, 10**18, 4],
        "cosine": pl.Series([0.99, 0.98, 0.7, 0.4, None], dtype=pl.Float32),
        "verifier_score": pl.Series([0.99, 0.9, 0.1, None, None], dtype=pl.Float32),
    }
)


def test_one_histogram_per_column_held_to_its_threshold() -> None:
    limits = limits_of(MatchThresholds(hamming={"phash": 2}, cosine=0.95), 0.5)
    hamming, cosine, score = histograms_of(SAMPLE, limits)
    assert hamming.counts.sum() == 5 and hamming.counts[0] == 2 and hamming.edges[-1] > 25
    assert hamming.caption() == ("3 of 5 sampled images have their nearest image at or below the threshold 2.")
    assert cosine.caption() == "2 of 4 sampled images have their nearest image at or above the threshold 0.95."
    assert score.caption() == "2 of 3 sampled images have their nearest image at or above the threshold 0.5."


def test_without_a_threshold_the_caption_only_counts() -> None:
    (hamming,) = histograms_of(SAMPLE.select("hamming_phash"), {})
    assert hamming.threshold is None and hamming.caption() == "5 sampled images."
    assert "threshold" not in svg(hamming)


def test_the_svg_is_well_formed_with_the_threshold_drawn() -> None:
    hamming = histograms_of(SAMPLE, {"hamming_phash": 2})[0]
    root = ElementTree.fromstring(svg(hamming))
    namespace = ""
    bars = root.findall(f"{namespace}rect")
    assert len(bars) == 4  # distances 0, 1, 20 and 25
    texts = [element.text for element in root.iter("text")]
    assert "threshold 2" in texts and "Hamming distance" in texts
    heights = sorted(float(bar.get("height")) for bar in bars)
    assert heights[-1] == 2 * heights[0]  # two images at distance 0, one elsewhere


def test_the_png_is_a_picture_of_the_same_size() -> None:
    picture = Image.open(io.BytesIO(png(histograms_of(SAMPLE, {"cosine": 0.95})[1])))
    assert picture.size == (WIDTH, HEIGHT) and picture.format == "PNG"
    pixels = np.asarray(picture.convert("RGB"))
    assert (pixels[..., 0] > 150).any() and (pixels != 255).any()  # the threshold's red line, bars
