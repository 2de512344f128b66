"""Stage 4, search: candidate pairs from exact, Hamming and cosine joins, geometric views and
look-alike lists, for whole datasets and for new images against stored ones."""
