"""Asset groups: the stages of the pipeline as the Dagster UI shows them, in the order data flows."""

EXTRACTION = "extraction"  # per drop: read, decode, hash, thumbnail, embed
CATALOG = "catalog"  # which version of each input is live
CALIBRATION = "calibration"  # thresholds and the pair verifier, from the dataset's own copies
MATCHING = "matching"  # the similarity join and the duplicate clusters
REPORTS = "reports"  # leaks, label conflicts, the dedup manifest and the HTML report
