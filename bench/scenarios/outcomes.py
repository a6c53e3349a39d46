"""Rep feedback and business outcomes on what the agents did: reassignments, requalifications, meetings.

Each outcome is drawn from the action it follows with a uniform number hashed from the lead, not from
a shared random stream, so the outcomes of an action do not depend on which other actions a scenario
added or removed: a store of clean history stays valid for every scenario.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from scenarios.timeline import DAY, HOUR, business_hours

_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def uniform(lead: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per lead and salt (splitmix64 of both)."""
    with np.errstate(over="ignore"):
        z = lead.astype(np.uint64) * _GOLDEN + np.uint64(salt) * _MIX1
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _ts_us(frame: pl.DataFrame) -> np.ndarray:
    return frame["ts"].dt.epoch("us").to_numpy()


def _when(frame: pl.DataFrame, delay: np.ndarray, salt: int, office: bool = True) -> pl.Series:
    """The outcome's time: the action's time plus `delay`, moved into the region's office hours."""
    ts = _ts_us(frame) + delay.astype(np.int64)
    if office:
        ts = business_hours(ts, frame["_offset_h"].to_numpy(), uniform(frame["_lead"].to_numpy(), salt))
    return pl.Series("ts", ts).cast(pl.Datetime("us", "UTC"))


def _first_ok(frame: pl.DataFrame) -> pl.DataFrame:
    """The first successful event per lead: a looping agent's copies get no outcomes of their own."""
    return frame.filter(pl.col("status") == "ok").sort("ts").unique("_lead", keep="first", maintain_order=True)


def _outcome(frame: pl.DataFrame, kind: str, prefix: str, ts: pl.Series, **columns: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(ts).select(
        pl.concat_str(pl.lit(prefix + "-"), pl.col("event_id")).alias("event_id"),
        pl.col("ts"), pl.lit(kind).alias("kind"), pl.lit("lead").alias("resource.type"),
        pl.col("resource.id"), *[expr.alias(name) for name, expr in columns.items()])


def outcomes(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Outcome events, one frame per kind, from the final action frames."""
    out: dict[str, pl.DataFrame] = {}
    assign = _first_ok(frames["assign"])
    lead = assign["_lead"].to_numpy()
    changed = assign.filter(pl.Series(uniform(lead, 1) < assign["_p_owner_changed"].to_numpy()))
    lead_c = changed["_lead"].to_numpy()
    new_owner = pl.format("sdr-{}-{}-{}", pl.col("_region").str.to_lowercase(), pl.col("_seg_code"),
                          pl.col("_sdr") % 4 + 1)
    out["owner_changed"] = _outcome(
        changed, "owner_changed", "own", _when(changed, HOUR - np.log(uniform(lead_c, 2)) * 8 * HOUR, 3),
        actor=new_owner, field=pl.lit("OwnerId"), **{"from": pl.col("after.owner"), "to": new_owner},
        corrects_event_id=pl.col("event_id"))
    sdr = assign.filter((pl.col("_path") == "sdr") & pl.Series(uniform(lead, 7) < 0.15))
    out["meeting_booked"] = _outcome(
        sdr, "meeting_booked", "mtg", _when(sdr, DAY - np.log(uniform(sdr["_lead"].to_numpy(), 8)) * 1.5 * DAY, 9),
        actor=pl.col("after.owner"))

    qualify = _first_ok(frames["qualify"])
    requal = qualify.filter(pl.Series(uniform(qualify["_lead"].to_numpy(), 4) < qualify["_p_requalified"].to_numpy()))
    lead_r = requal["_lead"].to_numpy()
    out["requalified"] = _outcome(
        requal, "requalified", "rq", _when(requal, 2 * HOUR - np.log(uniform(lead_r, 5)) * 10 * HOUR, 6),
        actor=pl.lit("sdr-manager"), field=pl.lit("qualified"),
        **{"from": pl.col("_qualified"), "to": ~pl.col("_qualified")}, corrects_event_id=pl.col("event_id"))

    writes = _first_ok(frames["update_industry"])
    reverted = writes.filter(pl.Series(uniform(writes["_lead"].to_numpy(), 15) < writes["_p_reverted"].to_numpy()))
    lead_w = reverted["_lead"].to_numpy()
    out["field_changed"] = _outcome(  # a rep sets the industry the agent wrote back to empty, hours later
        reverted, "field_changed", "fc", _when(reverted, HOUR / 2 - np.log(uniform(lead_w, 16)) * 3 * HOUR, 17),
        actor=pl.lit("rep-ops"), field=pl.lit("industry"),
        **{"from": pl.col("after.industry"), "to": pl.lit(None, pl.String)})

    email = _first_ok(frames["email"]) if "email" in frames else None
    if email is not None and email.height:
        lead_e = email["_lead"].to_numpy()
        replied = email.filter(pl.Series(uniform(lead_e, 10) < 0.12))
        out["replied"] = _outcome(
            replied, "replied", "rep", _when(replied, -np.log(uniform(replied["_lead"].to_numpy(), 11)) * 6 * HOUR, 12))
        spam = email.filter(pl.Series(uniform(lead_e, 13) < 0.004))
        out["marked_spam"] = _outcome(
            spam, "marked_spam", "spm", _when(spam, -np.log(uniform(spam["_lead"].to_numpy(), 14)) * 2 * HOUR, 0,
                                               office=False), corrects_event_id=pl.col("event_id"))
    return out
