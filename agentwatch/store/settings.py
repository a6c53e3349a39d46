"""The ``store:`` section of ``agentwatch.yaml``: compaction and retention (docs/store.md lists every default)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CompactionSettings(BaseModel):
    """When partitions are merged, into what, and how long merged-away files are kept for running queries."""

    model_config = ConfigDict(extra="forbid")

    quiet_minutes: float = Field(
        10, ge=0, description="A closed day partition (before today, UTC) is merged once no part has landed in it "
                              "for this long.")
    max_open_parts: int = Field(
        64, ge=2, description="A partition holding more data parts than this is merged even while it is open "
                              "(today's), so a busy day never piles up thousands of parts.")
    target_row_group_rows: int = Field(
        131_072, ge=1024, description="Rows per row group of a merged file (sorted by time, then event_id, so a "
                                      "time range skips most row groups).")
    grace_minutes: float = Field(
        15, ge=0, description="Files made invisible (merged away, erased from, expired) are deleted this long after, "
                              "by a later pass: longer than any single query, which may still read them.")
    every_seconds: float = Field(
        60, gt=0, description="How often `agentwatch serve` runs a compaction and retention pass in the background.")


class RetentionDays(BaseModel):
    """Days of events kept per dataset; null keeps everything."""

    model_config = ConfigDict(extra="forbid")

    actions: int | None = Field(None, ge=1, description="Day partitions of actions older than this many days before "
                                                        "today (UTC) are dropped.")
    outcomes: int | None = Field(None, ge=1, description="Day partitions of outcomes older than this many days before "
                                                         "today (UTC) are dropped.")
    spans: int | None = Field(None, ge=1, description="Day partitions of OTLP span summaries (model calls, agent runs, "
                                                      "unmatched spans) older than this many days before today (UTC) "
                                                      "are dropped.")
    schema_snapshots: int | None = Field(None, ge=1, description="Schema snapshots taken more than this many days "
                                                                 "before today (UTC) are dropped.")


class AggregateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kept_in_memory_mb: int = Field(
        256, ge=0, description="`agentwatch serve` holds this many MB of the kept aggregates' files in memory "
        "between its minute runs, so it does not read the same week of files every minute, the settled minutes "
        "after the stored hours, so it reads only the last few minutes raw, and each aggregate's last answer, so it "
        "decodes only what settled since; 0 reads them each run.")


class StoreSettings(BaseModel):
    """The ``store:`` section."""

    model_config = ConfigDict(extra="forbid")

    compaction: CompactionSettings = Field(default_factory=CompactionSettings,
                                           description="Merging small parts into large files.")
    retention_days: RetentionDays = Field(default_factory=RetentionDays,
                                          description="How long events are kept (default: forever).")
    aggregates: AggregateSettings = Field(default_factory=AggregateSettings,
                                          description="The checks' kept aggregates (docs/architecture.md).")
