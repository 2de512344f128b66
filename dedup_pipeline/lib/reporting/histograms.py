"""Histograms with the threshold drawn on each, as inline SVG for the HTML report and as PNG for the
Dagster UI (markdown metadata): the sampled images' nearest-neighbour distances
(``search.nearest_neighbours``), and calibration's synthetic copies against its hard negatives.
Copies show as a pile near distance 0 (similarity 1) apart from the bulk of distinct images; a
threshold in the gap between separates them, one inside either pile does not."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from PIL import Image, ImageDraw, ImageFont

from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE, MatchThresholds
from dedup_pipeline.lib.search.nearest_neighbours import PARTNER_SUFFIX

WIDTH, HEIGHT, MARGIN = 480, 200, 36
BAR, COPY_BAR, THRESHOLD_COLOUR, TEXT = "#4a6fa5", "#e08a1e", "#c0392b", "#333333"
SIMILARITY_BIN = 0.02
SCORE_BIN = 0.05


@dataclass(frozen=True)
class Histogram:
    title: str
    axis: str
    values: np.ndarray
    edges: np.ndarray  # bin edges, increasing
    threshold: float | None
    duplicates_below: bool  # a distance: duplicates lie at or below the threshold (else at or above)
    copies: np.ndarray | None = None  # a second series: calibration's synthetic copies (values: its negatives)

    @property
    def counts(self) -> np.ndarray:
        return self._counts(self.values)

    @property
    def copy_counts(self) -> np.ndarray | None:
        return None if self.copies is None else self._counts(self.copies)

    def _counts(self, values: np.ndarray) -> np.ndarray:
        return np.histogram(np.clip(values, self.edges[0], self.edges[-1]), self.edges)[0]

    def _inside(self, values: np.ndarray) -> int:
        return int((values <= self.threshold if self.duplicates_below else values >= self.threshold).sum())

    def caption(self) -> str:
        side = "at or below" if self.duplicates_below else "at or above"
        if self.copies is not None:
            if self.threshold is None:
                return f"{len(self.copies):,} synthetic copies, {len(self.values):,} hard negatives; no threshold."
            return (
                f"Held-out half: {self._inside(self.copies):,} of {len(self.copies):,} synthetic copies (orange) and "
                f"{self._inside(self.values):,} of {len(self.values):,} hard negatives (blue) {side} the threshold "
                f"{self.threshold:.4g}."
            )
        if self.threshold is None:
            return f"{len(self.values):,} sampled images."
        return (
            f"{self._inside(self.values):,} of {len(self.values):,} sampled images have their nearest image {side} "
            f"the threshold {self.threshold:.4g}."
        )


def limits_of(thresholds: MatchThresholds, verifier_threshold: float | None) -> dict[str, float | None]:
    """The threshold each column of a neighbour sample is held to."""
    limits: dict[str, float | None] = {f"hamming_{name}": value for name, value in thresholds.hamming.items()}
    limits["cosine"] = thresholds.cosine
    limits["verifier_score"] = verifier_threshold
    return limits


def _distance_edges(values: np.ndarray, threshold: float | None) -> np.ndarray:
    """A bin per whole distance, from 0 to the largest value or the threshold."""
    top = max([*values.tolist(), threshold or 0]) + 1
    return np.arange(0, top + 1) - 0.5


def _similarity_edges(values: np.ndarray, threshold: float | None) -> np.ndarray:
    """Bins of ``SIMILARITY_BIN`` up to 1, from the smallest value (at most 0.5) or the threshold."""
    low = min([*values.tolist(), threshold if threshold is not None else 1.0, 0.5])
    return np.arange(np.floor(low / SIMILARITY_BIN) * SIMILARITY_BIN, 1 + SIMILARITY_BIN / 2, SIMILARITY_BIN)


def histograms_of(sample: pl.DataFrame, limits: Mapping[str, float | None]) -> list[Histogram]:
    """A histogram per column of a neighbour sample, with its threshold from ``limits``."""
    found = []
    for name in sample.columns:
        if name.endswith(PARTNER_SUFFIX):  # the ids of the nearest images
            continue
        values = sample[name].drop_nulls().cast(pl.Float64).to_numpy()
        threshold = limits.get(name)
        if name.startswith("hamming_"):
            title = f"nearest image by {name.removeprefix('hamming_')}"
            found.append(
                Histogram(title, "Hamming distance", values, _distance_edges(values, threshold), threshold, True)
            )
        elif name == "cosine":
            edges = _similarity_edges(values, threshold)
            found.append(
                Histogram(
                    f"nearest image by {EMBEDDING_EVIDENCE}", "cosine similarity", values, edges, threshold, False
                )
            )
        elif name == "verifier_score":
            edges = np.linspace(0, 1, round(1 / SCORE_BIN) + 1)
            found.append(
                Histogram(
                    "verifier on the most similar image", "probability of a copy", values, edges, threshold, False
                )
            )
    return found


def calibration_histograms(
    copies: Mapping[str, np.ndarray],
    negatives: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float | None],
) -> list[Histogram]:
    """Per evidence (a hash or ``embedding``): its distances (similarities) between sampled images and
    their synthetic copies, and between them and their hard negatives, with the chosen threshold."""
    found = []
    for name, copied in copies.items():
        threshold, both = thresholds.get(name), np.concatenate([copied, negatives[name]])
        if name == EMBEDDING_EVIDENCE:
            axis, edges, below = "cosine similarity", _similarity_edges(both, threshold), False
        else:
            axis, edges, below = "Hamming distance", _distance_edges(both, threshold), True
        found.append(Histogram(f"calibration of {name}", axis, negatives[name], edges, threshold, below, copies=copied))
    return found


def _geometry(histogram: Histogram) -> tuple[list[tuple[float, float, float, float, str]], float | None]:
    """Bars as (x, y, width, height, colour) in the plot's pixels, and the threshold's x."""
    counts = histogram.counts
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    low, high = histogram.edges[0], histogram.edges[-1]

    def x_of(value: float) -> float:
        return MARGIN + (value - low) / (high - low) * inner_w

    series = [(counts, BAR)] + ([(histogram.copy_counts, COPY_BAR)] if histogram.copies is not None else [])
    peak = max([int(c.max()) if len(c) else 0 for c, _ in series] + [1])
    bars = []
    for number, (values, colour) in enumerate(series):  # two series share each bin, side by side
        for index, count in enumerate(values):
            if count:
                height = max(1.0, count / peak * inner_h)  # a lone image still shows
                left, right = x_of(histogram.edges[index]), x_of(histogram.edges[index + 1])
                width = (right - left) / len(series)
                bars.append((left + number * width, HEIGHT - MARGIN - height, max(1.0, width - 1), height, colour))
    threshold = None
    if histogram.threshold is not None:
        # whole distances: the line goes between the last accepted bin and the first rejected one
        edge = histogram.threshold + 0.5 if histogram.duplicates_below else histogram.threshold
        if low <= edge <= high:
            threshold = x_of(edge)
    return bars, threshold


def svg(histogram: Histogram) -> str:
    """The histogram as an inline ``<svg>`` element (every text escaped)."""
    bars, threshold = _geometry(histogram)
    parts = [
        f'<svg class="histogram" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f"<title>{html.escape(histogram.title)}</title>",
        *(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{c}"/>' for x, y, w, h, c in bars),
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="{TEXT}"/>',
    ]
    if threshold is not None:
        parts.append(
            f'<line x1="{threshold:.1f}" y1="{MARGIN - 10}" x2="{threshold:.1f}" y2="{HEIGHT - MARGIN}" '
            f'stroke="{THRESHOLD_COLOUR}" stroke-width="2" stroke-dasharray="5,3"/>'
            f'<text x="{threshold + 4:.1f}" y="{MARGIN - 2}" fill="{THRESHOLD_COLOUR}" font-size="11">'
            f"threshold {histogram.threshold:.4g}</text>"
        )
    for x, label in _ticks(histogram):
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN + 14}" font-size="10" text-anchor="middle">{label}</text>')
    parts += [
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle">'
        f"{html.escape(histogram.axis)}</text>",
        f'<text x="{MARGIN}" y="14" font-size="12" font-weight="bold">{html.escape(histogram.title)}</text>',
        f'<text x="{WIDTH - MARGIN}" y="14" font-size="10" text-anchor="end">tallest bar: '
        f"{_tallest(histogram):,}</text>",
        "</svg>",
    ]
    return "".join(parts)


def _tallest(histogram: Histogram) -> int:
    counts = [histogram.counts] + ([histogram.copy_counts] if histogram.copies is not None else [])
    return max(int(c.max()) if len(c) else 0 for c in counts)


def _ticks(histogram: Histogram, count: int = 6) -> list[tuple[float, str]]:
    low, high = histogram.edges[0], histogram.edges[-1]
    inner_w = WIDTH - 2 * MARGIN
    if histogram.duplicates_below:  # whole distances, each bin centred on its value
        values = np.unique(np.round(np.linspace(low + 0.5, high - 0.5, count))).astype(int)
    else:
        values = np.linspace(low, high, count)
    return [(MARGIN + (value - low) / (high - low) * inner_w, f"{value:.3g}") for value in values]


def png(histogram: Histogram) -> bytes:
    """The same picture as :func:`svg`, drawn with Pillow (for the Dagster UI's markdown)."""
    bars, threshold = _geometry(histogram)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)
    for x, y, w, h, colour in bars:
        draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.line([MARGIN, HEIGHT - MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN], fill=TEXT)
    if threshold is not None:
        for top in range(MARGIN - 10, HEIGHT - MARGIN, 8):
            draw.line([threshold, top, threshold, min(top + 5, HEIGHT - MARGIN)], fill=THRESHOLD_COLOUR, width=2)
        draw.text(
            (threshold + 4, MARGIN - 14), f"threshold {histogram.threshold:.4g}", fill=THRESHOLD_COLOUR, font=font
        )
    for x, label in _ticks(histogram):
        draw.text((x, HEIGHT - MARGIN + 8), label, fill=TEXT, font=font, anchor="mt")
    draw.text((WIDTH / 2, HEIGHT - 4), histogram.axis, fill=TEXT, font=font, anchor="mb")
    draw.text((MARGIN, 4), histogram.title, fill=TEXT, font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
