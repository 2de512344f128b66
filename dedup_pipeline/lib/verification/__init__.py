"""Stage 5, verification: the features of a candidate pair (aligned thumbnails, distances) and
the model that judges it."""
