import ctypes
import ctypes.util

from dedup_pipeline.lib.runtime.allocator import keep_freed_memory_for_reuse


def test_the_setting_takes_effect_on_glibc() -> None:
    glibc = ctypes.util.find_library("c") is not None and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt")
    assert keep_freed_memory_for_reuse() is glibc
