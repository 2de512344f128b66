"""Speed and memory benchmarks (``make bench``): joins, embeddings, decoding, the whole pipeline,
and peer tools measured side by side in one session. Results go to bench/results.md and .json."""
