"""Stage 3, calibration: thresholds and the pair verifier, learnt from synthetic copies of the dataset's own images."""
