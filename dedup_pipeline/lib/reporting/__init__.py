"""Reports people look at: the static HTML report and what it shows."""
