from pathlib import Path

import pytest

from dedup_pipeline.lib.features.onnx_models import CACHE_VARIABLE, exported_model, model_cache


def test_a_model_is_exported_once_per_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    exports = []

    def export(path: Path) -> None:
        exports.append(path)
        path.write_bytes(b"graph")

    first = exported_model("net", {"weights": "a"}, export)
    assert exported_model("net", {"weights": "a"}, export) == first and len(exports) == 1
    assert first.parent == model_cache() == tmp_path and first.read_bytes() == b"graph"
    second = exported_model("net", {"weights": "b"}, export)
    assert second != first and len(exports) == 2
    assert sorted(tmp_path.iterdir()) == sorted([first, second])  # no temporary file left


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))

    def export(path: Path) -> None:
        path.write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        exported_model("net", {"weights": "a"}, export)
    assert list(tmp_path.iterdir()) == []
