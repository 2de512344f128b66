"""Runtime helpers: the worker pool, memory measurement, allocator and CPU feature checks."""
