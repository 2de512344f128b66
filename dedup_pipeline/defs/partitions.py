"""Data drops as Dagster partitions: one dynamic partition per registered drop (its key is the
drop's key in the store, ``<sequence>-<name>``), added by the drop sensor or by the CLI."""

import dagster as dg

DROPS = dg.DynamicPartitionsDefinition(name="drops")
