"""Stage 6, decisions: duplicate clusters, the dedup policy, leak report and label conflicts."""
