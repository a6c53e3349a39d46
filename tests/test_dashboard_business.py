"""The routing accuracy, outcome feedback and pipeline quality pages (AppTest), against the store read independently.

The business KPIs are judged on mature cohorts (dashboards/cohorts.py): a lead belongs to the cohort of its first
routing (no routing of it in the 30 days before) and is judged on a fixed window after it. The independent
queries here spell that definition out with EXISTS subqueries per routing, not the pages' joins and sums.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from rich.console import Console
from streamlit.testing.v1 import AppTest

from agentwatch.core.home import Home
from agentwatch.dashboards import kpis
from tests.checks_support import T0, iso, store_events
from tests.dashboard_support import (
    open_dashboard,  # noqa: F401  (autouse: no key asked)
    open_page,
    sql,
)

ROUTING = "('lead.route', 'lead.assign_owner')"


@pytest.fixture(scope="module")
def demo_weeks(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """24 days of the demo, ingested (no checks replayed): long enough for week cohorts judged 7 and 14 days on."""
    from agentwatch.app.demo.run import run_demo

    home = Home.resolve(tmp_path_factory.mktemp("business-demo") / "home")
    run_demo(home, days=24, checks=False, console=Console(file=io.StringIO()))
    return home


def data_end(home: Home) -> datetime:
    """The hour after the latest action or outcome: where every page's ranges end, worked out here."""
    ((end,),) = sql(home, "SELECT date_trunc('hour', greatest((SELECT max(ts) FROM actions), "
                          "(SELECT max(ts) FROM outcomes))) + INTERVAL 1 HOUR")
    return end


def window(home: Home, days: int) -> tuple[datetime, datetime]:
    """The outcome page's range: `days` back from the data end."""
    end = data_end(home)
    return end - timedelta(days=days), end


def cohort(home: Home, span_days: int, judge_days: int, back: int = 0) -> tuple[datetime, datetime]:
    """A mature cohort: the `span_days` ending `judge_days` before the data end (`back` spans earlier)."""
    end = data_end(home) - timedelta(days=judge_days + back * span_days)
    return end - timedelta(days=span_days), end


def metrics(at: AppTest) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta or None) for m in at.metric}


def judged(home: Home, start: datetime, end: datetime, keep: int = 7, conversion: int = 14) -> dict[str, Any]:
    """The cohort's KPI inputs by the definition, one EXISTS per first routing: leads, reassigned, replied and
    corrections within `keep` days, touched leads and their mean hours to the first external action within
    `keep`, opportunity and won within `conversion`, and qualified opportunities (of leads qualified from a day
    before the routing to the end of the window)."""
    same = "o.resource_type = f.resource_type AND o.resource_id = f.resource_id"

    def within(days: int, alias: str = "o") -> str:
        return f"{alias}.ts >= f.ts AND {alias}.ts <= f.ts + INTERVAL {days} DAY"

    ((leads, reassigned, replied, corrections, touched, hours, opportunity, won, qualified),) = sql(home, f"""
        WITH r AS (SELECT event_id, ts, resource_type, resource_id FROM actions
                   WHERE status = 'ok' AND action IN {ROUTING}),
        f AS (SELECT * FROM r WHERE ts >= $1 AND ts < $2 AND NOT EXISTS (
                  SELECT 1 FROM r p WHERE p.resource_type = r.resource_type AND p.resource_id = r.resource_id
                  AND p.ts >= r.ts - INTERVAL 30 DAY AND (p.ts < r.ts OR (p.ts = r.ts AND p.event_id < r.event_id)))),
        facts AS (
            SELECT f.*,
              EXISTS (SELECT 1 FROM outcomes o WHERE o.kind = 'owner_changed' AND {same} AND {within(keep)}
                      AND (o.corrects_event_id IS NULL OR o.corrects_event_id IN (SELECT event_id FROM r)))
                  AS reassigned,
              EXISTS (SELECT 1 FROM outcomes o WHERE o.kind = 'replied' AND {same} AND {within(keep)}) AS replied,
              (SELECT count(*) FROM outcomes o WHERE o.kind IN ('owner_changed', 'requalified', 'marked_spam')
                   AND {same} AND {within(keep)}) AS corrections,
              (SELECT epoch(min(a.ts) - f.ts) / 3600 FROM actions a WHERE a.external AND a.status = 'ok'
                   AND a.resource_type = f.resource_type AND a.resource_id = f.resource_id AND {within(keep, "a")})
                  AS hours,
              EXISTS (SELECT 1 FROM outcomes o WHERE o.kind = 'opportunity_created' AND {same}
                      AND {within(conversion)}) AS opportunity,
              EXISTS (SELECT 1 FROM outcomes o WHERE o.kind = 'closed_won' AND {within(conversion)} AND ({same}
                      OR o.resource_id IN (SELECT to_value->>'$' FROM outcomes c WHERE c.kind = 'opportunity_created'
                                           AND c.resource_id = f.resource_id))) AS won,
              CASE WHEN EXISTS (SELECT 1 FROM actions q WHERE q.action = 'lead.qualify' AND q.status = 'ok'
                                AND q.resource_id = f.resource_id AND q.ts >= f.ts - INTERVAL 1 DAY
                                AND q.ts <= f.ts + INTERVAL {conversion} DAY
                                AND (q.decision->>'qualified' = 'true' OR q.after->>'status' = 'qualified'))
                   THEN (SELECT count(*) FROM outcomes o WHERE o.kind = 'opportunity_created' AND {same}
                         AND {within(conversion)}) ELSE 0 END AS qualified
            FROM f)
        SELECT count(*), count(*) FILTER (WHERE reassigned), count(*) FILTER (WHERE replied), sum(corrections),
               count(hours), avg(hours), count(*) FILTER (WHERE opportunity), count(*) FILTER (WHERE won),
               sum(qualified)
        FROM facts""", start, end)
    return {"leads": leads, "reassigned": reassigned, "replied": replied, "corrections": corrections,
            "touched": touched, "hours": hours, "opportunity": opportunity, "won": won, "qualified": qualified}


def test_routing_accuracy_is_one_number_on_both_pages(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """Routing accuracy of the mature week (leads a week old or more), with its n, reads the same on the routing
    and pipeline pages and equals the independent count; so does the change against the week before."""
    routing = metrics(open_page(monkeypatch, demo_weeks, "routing"))
    pipeline_page = open_page(monkeypatch, demo_weeks, "pipeline")
    pipeline = metrics(pipeline_page)
    now, before = judged(demo_weeks, *cohort(demo_weeks, 7, 7)), judged(demo_weeks, *cohort(demo_weeks, 7, 7, back=1))
    assert now["leads"] > 1000 and 50 < now["reassigned"] < now["leads"]
    accuracy = 1 - now["reassigned"] / now["leads"]
    change = (accuracy - (1 - before["reassigned"] / before["leads"])) * 100
    assert routing["Routing accuracy"] == pipeline["Routing accuracy"] == (f"{accuracy:.1%}", f"{change:+.1f} pp")
    assert routing["Routed leads"][0] == f"{now['leads']:,}"
    assert routing["Reassigned within the window"][0] == f"{now['reassigned']:,}"
    assert f"n = {now['leads']:,} leads" in [c.value for c in pipeline_page.caption]


def test_pipeline_kpis_match_the_definition(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """Every KPI on the pipeline page equals the independent per-routing count: the kept-window ones over the
    week a week old, the conversion ones over the week two weeks old."""
    shown = metrics(open_page(monkeypatch, demo_weeks, "pipeline"))
    early = judged(demo_weeks, *cohort(demo_weeks, 7, 7))
    late = judged(demo_weeks, *cohort(demo_weeks, 7, 14))
    assert early["replied"] > 0 and early["corrections"] > 0 and late["opportunity"] > 0 and late["qualified"] > 0
    assert shown["Reply rate"][0] == f"{early['replied'] / early['leads']:.1%}"
    assert shown["Rep corrections per 100 leads"][0] == f"{early['corrections'] / early['leads'] * 100:.1f}"
    assert shown["Time to first action"][0] == f"{early['hours']:.1f} h"
    assert shown["Conversion to opportunity"][0] == f"{late['opportunity'] / late['leads']:.1%}"
    assert shown["Conversion to won"][0] == f"{late['won'] / late['leads']:.1%}"
    assert shown["Qualified opportunities"][0] == f"{late['qualified']:,}"  # the demo sends no amounts


def test_routing_top_flow_matches_the_store(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """The top reassignment flow of the mature week (routed to X, moved to Y) equals a plain SQL over the demo."""
    at = open_page(monkeypatch, demo_weeks, "routing")
    start, end = cohort(demo_weeks, 7, 7)
    flows = sql(demo_weeks, f"""
        WITH r AS (SELECT event_id, ts, resource_type, resource_id,
                          coalesce(decision->>'route_to', decision->>'owner') AS sent_to
                   FROM actions WHERE status = 'ok' AND action IN {ROUTING}),
        f AS (SELECT * FROM r WHERE ts >= $1 AND ts < $2 AND NOT EXISTS (
                  SELECT 1 FROM r p WHERE p.resource_id = r.resource_id AND p.ts >= r.ts - INTERVAL 30 DAY
                  AND (p.ts < r.ts OR (p.ts = r.ts AND p.event_id < r.event_id)))),
        moves AS (SELECT f.resource_id, f.sent_to, min_by(o.to_value->>'$', o.ts) AS moved_to
                  FROM f JOIN outcomes o ON o.kind = 'owner_changed' AND o.resource_id = f.resource_id
                   AND o.ts >= f.ts AND o.ts <= f.ts + INTERVAL 7 DAY
                   AND (o.corrects_event_id IS NULL OR o.corrects_event_id IN (SELECT event_id FROM r))
                  GROUP BY ALL)
        SELECT sent_to, moved_to, count(*) AS n FROM moves GROUP BY ALL ORDER BY n DESC, 1, 2""", start, end)
    total = sum(n for _, _, n in flows)
    table = next(d.value for d in at.dataframe if "Moved to" in d.value.columns)
    top = table.iloc[0]
    assert (top["Routed to"], top["Moved to"], top["Leads"]) == flows[0]
    assert top["Share of reassignments (%)"] == round(flows[0][2] / total * 100, 1)
    assert table["Leads"].sum() == sum(n for _, _, n in flows[:15])


def test_routing_by_week_splits_the_cohort_by_monday(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """Grouped by week (UTC in AppTest), each row is a Monday holding the cohort's leads first routed that week."""
    at = open_page(monkeypatch, demo_weeks, "routing", routing_by="week")
    start, end = cohort(demo_weeks, 7, 7)
    weeks = dict(sql(demo_weeks, f"""
        WITH r AS (SELECT event_id, ts, resource_id FROM actions WHERE status = 'ok' AND action IN {ROUTING})
        SELECT strftime(date_trunc('week', ts), '%Y-%m-%d'), count(*) FROM r
        WHERE ts >= $1 AND ts < $2 AND NOT EXISTS (
            SELECT 1 FROM r p WHERE p.resource_id = r.resource_id AND p.ts >= r.ts - INTERVAL 30 DAY
            AND (p.ts < r.ts OR (p.ts = r.ts AND p.event_id < r.event_id)))
        GROUP BY 1""", start, end))
    table = at.dataframe[0].value
    assert dict(zip(table["Week starting"], table["Routed leads"], strict=True)) == weeks
    assert sum(weeks.values()) == judged(demo_weeks, start, end)["leads"]


def routed_lead(number: int, at: datetime) -> tuple[list[dict], str]:
    """A lead the router routes at `at` (lead.route then lead.assign_owner), and the assign action's id."""
    lead, assign = f"L-{number:03d}", f"assign-{number:03d}"
    return [
        {"event_id": f"route-{number:03d}", "ts": iso(at), "agent_id": "lead-router", "agent_version": "1.0",
         "action": "lead.route", "resource": {"type": "lead", "id": lead}, "status": "ok",
         "decision": {"route_to": "sdr:na-smb", "owner": "sdr-1"}},
        {"event_id": assign, "ts": iso(at + timedelta(seconds=5)), "agent_id": "lead-router", "agent_version": "1.0",
         "action": "lead.assign_owner", "resource": {"type": "lead", "id": lead}, "status": "ok",
         "decision": {"owner": "sdr-1"}},
    ], assign


def outcome(number: int, kind: str, at: datetime, **keys: Any) -> dict:
    return {"event_id": f"{kind}-{number:03d}", "ts": iso(at), "kind": kind,
            "resource": {"type": "lead", "id": f"L-{number:03d}"}, **keys}


def three_weeks(home: Home, per_week: int, moved: tuple[int, int, int], replied: tuple[int, int, int] = (0, 0, 0),
                opportunities: int = 0, touch_hours: dict[int, list[float]] | None = None) -> Home:
    """Three weeks from T0 (a Monday), `per_week` leads routed in each, spread evenly; in week w the first
    moved[w] leads are reassigned 2 hours after their routing and the first replied[w] reply 3 hours after; in
    the middle week the first `opportunities` leads become opportunities a day on ($50k each from the first,
    which an agent qualified). The latest event is T0 + 21 days - 30 minutes, so the pages' data end at
    T0 + 21 days: with a 7-day kept window the middle week is the mature cohort, the first its comparison, the
    last provisional. `touch_hours` gives, per week, the hours from routing to an email sent (cycled over the
    week's leads)."""
    actions, outcomes = [], []
    for week in range(3):
        for i in range(per_week):
            number = week * 100 + i
            at = T0 + timedelta(days=7 * week) + timedelta(days=7) * i / per_week
            events, assign = routed_lead(number, at)
            actions += events
            if i < moved[week]:
                outcomes.append(outcome(number, "owner_changed", at + timedelta(hours=2), corrects_event_id=assign,
                                        field="owner", **{"from": "sdr-1", "to": "rep-9"}))
            if i < replied[week]:
                outcomes.append(outcome(number, "replied", at + timedelta(hours=3), actor="prospect"))
            if touch_hours and week in touch_hours:
                hours = touch_hours[week][i % len(touch_hours[week])]
                actions.append({"event_id": f"email-{number:03d}", "ts": iso(at + timedelta(hours=hours)),
                                "agent_id": "followup-agent", "action": "email.send", "status": "ok",
                                "external": True, "resource": {"type": "lead", "id": f"L-{number:03d}"}})
            if week == 1 and i < opportunities:
                outcomes.append(outcome(number, "opportunity_created", at + timedelta(days=1), to=f"OPP-{number}",
                                        amount=50_000.0 if i == 0 else None))
    actions.append({"event_id": "qualify-100", "ts": iso(T0 + timedelta(days=7) - timedelta(minutes=1)),
                    "agent_id": "qualifier-agent", "action": "lead.qualify", "status": "ok",
                    "resource": {"type": "lead", "id": "L-100"}, "decision": {"qualified": True, "score": 0.8}})
    outcomes.append({"event_id": "last", "ts": iso(T0 + timedelta(days=21) - timedelta(minutes=30)),
                     "kind": "replied", "resource": {"type": "lead", "id": "L-999"}, "actor": "prospect"})
    store_events(home, actions=actions, outcomes=outcomes)
    return home


@pytest.fixture
def young_leads_all_moved(tmp_path: Path) -> Home:
    """60 leads a week: none moved in the first week, 6 in the second, every one of the third (too young)."""
    return three_weeks(Home.resolve(tmp_path / "home"), 60, moved=(0, 6, 60))


@pytest.mark.parametrize("page", ["routing", "pipeline"])
def test_immature_leads_stay_out_of_the_headline(monkeypatch: pytest.MonkeyPatch, young_leads_all_moved: Home,
                                                 page: str) -> None:
    """The headline is the week old enough to judge (54 of 60 kept: 90.0%, -10.0 pp against 100%), with its n and
    interval; the last week's leads, all moved, are shown apart as provisional and move no headline number."""
    at = open_page(monkeypatch, young_leads_all_moved, page)
    assert metrics(at)["Routing accuracy"] == ("90.0%", "-10.0 pp")
    intervals = [tuple(float(x.rstrip("%")) for x in c.value.split("interval ")[1].split(" to "))
                 for c in at.caption if c.value.startswith("n = 60 leads, 95% interval")]
    assert any(low < 90 < high and high - low > 5 for low, high in intervals)  # 60 leads: a wide interval, shown
    if page == "routing":
        assert metrics(at)["Provisional leads"][0] == "60"
        assert ":gray[accuracy so far 0.0%]" in [c.value for c in at.caption]
    else:
        provisional = next(m.value for m in at.markdown if "Provisional" in m.value)
        assert "(60 leads): reply rate 0.0%; routing accuracy 0.0%" in provisional


@pytest.mark.parametrize("page", ["routing", "pipeline"])
def test_a_cohort_the_store_does_not_hold_is_refused(monkeypatch: pytest.MonkeyPatch, young_leads_all_moved: Home,
                                                     page: str) -> None:
    """28-day cohorts would need leads from before the store's first event: refused with a sentence, no number.
    14-day cohorts are held, but the 14 days before them are not: shown without a comparison, saying why."""
    refused = open_page(monkeypatch, young_leads_all_moved, page, **{f"{page}_range": "28 days"})
    assert "Routing accuracy" not in metrics(refused)
    assert any((w.value.startswith("Not computed") and "store begins" in w.value) or "store's first event" in w.value
               for w in refused.warning)
    alone = open_page(monkeypatch, young_leads_all_moved, page, **{f"{page}_range": "14 days"})
    assert metrics(alone)["Routing accuracy"] == ("95.0%", None)  # 54 of 60 and 60 of 60, nothing to compare
    assert any("with no comparison" in c.value and "before the store's first event" in c.value for c in alone.caption)
    if page == "pipeline":
        assert alone.info[-1].value.startswith("The reply rate cannot be compared")


def test_a_small_cohort_is_not_enough_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """20 leads a week: no percentage of 20, but 'not enough data' and the n it needs."""
    home = three_weeks(Home.resolve(tmp_path / "home"), 20, moved=(0, 2, 0))
    at = open_page(monkeypatch, home, "routing")
    assert metrics(at)["Routing accuracy"] == (kpis.NOT_ENOUGH, None)
    assert f"n = 20 leads (needs {kpis.MIN_LEADS})" in [c.value for c in at.caption]


def test_a_lead_routed_again_within_30_days_keeps_its_first_cohort(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """40 leads routed in week six: 10 of them were routed three weeks before (a re-routing: they stay in that
    older cohort), 10 five weeks before (back after a month of quiet: a new entry). The week-six cohort holds 30
    leads on both pages, though they scan different ranges; the 28-day cohort holds the 10 through their first
    routing and the 30 others: 40."""
    home = Home.resolve(tmp_path / "home")
    actions: list[dict] = []
    for i in range(40):
        at = T0 + timedelta(days=35) + timedelta(days=7) * i / 40
        actions += routed_lead(i, at)[0]
        if i < 20:
            earlier = T0 + timedelta(days=14 if i < 10 else 0, hours=i)
            actions += [dict(e, event_id=f"{e['event_id']}-before", ts=iso(earlier)) for e in routed_lead(i, at)[0]]
    outcomes = [outcome(0, "owner_changed", T0 + timedelta(days=36), to="rep-9"),
                {"event_id": "last", "ts": iso(T0 + timedelta(days=49) - timedelta(minutes=30)), "kind": "replied",
                 "resource": {"type": "lead", "id": "L-999"}}]
    store_events(home, actions=actions, outcomes=outcomes)
    assert metrics(open_page(monkeypatch, home, "routing"))["Routed leads"][0] == "30"
    assert "n = 30 leads, 95% interval" in " ".join(c.value for c in open_page(monkeypatch, home, "pipeline").caption)
    assert metrics(open_page(monkeypatch, home, "routing", routing_range="28 days"))["Routed leads"][0] == "40"
    assert judged(home, T0 + timedelta(days=35), T0 + timedelta(days=42))["leads"] == 30


def test_pipeline_note_names_the_kpi_that_disagrees(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Reply rate up 50 points while routing accuracy fell 30 in the mature week: the note says so, names the
    corrections too, and names no KPI that held."""
    home = three_weeks(Home.resolve(tmp_path / "home"), 40, moved=(0, 12, 0), replied=(4, 24, 0), opportunities=2)
    shown = metrics(open_page(monkeypatch, home, "pipeline", pipeline_conversion_days=7))
    assert shown["Reply rate"] == ("60.0%", "+50.0 pp")  # 24 of 40 against 4 of 40
    assert shown["Routing accuracy"] == ("70.0%", "-30.0 pp")
    assert shown["Rep corrections per 100 leads"] == ("30.0", "new")
    assert shown["Qualified pipeline"] == ("$50.0k", "new")  # L-100's $50k; L-101 was never qualified
    assert shown["Conversion to opportunity"] == ("5.0%", "+5.0 pp")  # 2 of 40; not beyond noise: not in the note
    at = open_page(monkeypatch, home, "pipeline", pipeline_conversion_days=7)
    [warning] = at.warning
    assert "Reply rate rose 50.0 points while routing accuracy fell 30.0 points: more replies are coming from " \
           "leads routed to the wrong rep." in warning.value
    assert "rep corrections per 100 leads rose from 0.0 to 30.0" in warning.value
    assert "time to first action" not in warning.value and "conversion" not in warning.value


@pytest.mark.parametrize(("week_one", "coloured"), [([1.0, 23.0], False), ([12.0], True)])
def test_a_change_within_noise_is_grey_and_untold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   week_one: list[float], coloured: bool) -> None:
    """Time to first action goes from 10 h to 12 h (+20%). Spread over 1 h to 23 h (against 1 h to 19 h before),
    that is noise at 40 leads a week (z about 0.9): grey, no arrow, not in the note. Every lead at exactly 10 h
    and then 12 h is a real change: red (lower is better), and the note names it."""
    home = three_weeks(Home.resolve(tmp_path / "home"), 40, moved=(0, 0, 0), replied=(8, 8, 0),
                       touch_hours={0: [1.0, 19.0] if not coloured else [10.0], 1: week_one})
    at = open_page(monkeypatch, home, "pipeline")
    [touch] = [m for m in at.metric if m.label == "Time to first action"]
    assert (touch.value, touch.delta) == ("12.0 h", "+20%")
    assert (touch.proto.color == touch.proto.MetricColor.RED) is coloured
    assert (touch.proto.color == touch.proto.MetricColor.GRAY) is not coloured
    told = " ".join(box.value for box in [*at.warning, *at.info, *at.success])
    assert ("time to first action rose from 10.0 h to 12.0 h" in told) is coloured


def charted(at: AppTest) -> list[dict]:
    """Every row of every dataset of every chart on the page."""
    return [row for chart in at.get("vega_lite_chart") for d in chart.proto.datasets
            for row in pa.ipc.open_stream(d.data.data).read_all().to_pylist()]


def test_the_rename_is_marked_on_the_trend(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """The demo's rename incident (critical, a root) is drawn on the pipeline trend at its start, linking to it;
    its effects (explained by it) are not drawn again."""
    from agentwatch.checks.engine import incident_store

    incidents = incident_store(demo_home).list()
    [rename] = [i for i in incidents if i.check == "schema.field_renamed" and i.severity == "critical"]
    effects = set(rename.effects)
    at = open_page(monkeypatch, demo_home, "pipeline")
    marked = {row["id"]: row for row in charted(at) if "href" in row}
    assert rename.id in marked and not effects & set(marked)
    assert marked[rename.id]["href"] == f"./?incident={rename.id}"
    assert marked[rename.id]["start"].timestamp() == pytest.approx(rename.started_at.timestamp())
    links = next(m.value for m in at.markdown if m.value.startswith("Critical incidents in this span"))
    assert f"[{rename.id}](./?incident={rename.id})" in links


def test_outcome_feedback_counts_match_the_store(monkeypatch: pytest.MonkeyPatch, demo_home: Home) -> None:
    """Corrections and meetings in the range, and each agent's share of them, equal independent queries: named
    corrections by a join on corrects_event_id, the rest by the last ok action on the record (a subquery)."""
    at = open_page(monkeypatch, demo_home, "outcomes", outcomes_range="Last 7 days", outcomes_by="version")
    start, end = window(demo_home, 7)
    kinds = dict(sql(demo_home, "SELECT kind, count(*) FROM outcomes WHERE ts >= ? AND ts < ? GROUP BY kind",
                     start, end))
    shown = metrics(at)
    corrections = kinds["owner_changed"] + kinds["requalified"] + kinds["marked_spam"]
    assert shown["Rep correction events"][0] == f"{corrections:,}"
    assert shown["Meetings booked"][0] == f"{kinds['meeting_booked']:,}"
    assert shown["Accepted"][0] == f"{kinds['meeting_accepted']:,}"
    assert shown["Opportunities created"][0] == f"{kinds['opportunity_created']:,}"
    table = at.dataframe[0].value.set_index(["Agent", "Version"])
    named = sql(demo_home, """
        SELECT a.agent_id, a.agent_version, o.kind, count(*) FROM outcomes o JOIN actions a
        ON a.event_id = o.corrects_event_id WHERE o.ts >= ? AND o.ts < ? GROUP BY ALL""", start, end)
    column = {"requalified": "Requalified", "owner_changed": "Reassignments", "marked_spam": "Marked spam"}
    assert {(agent, version, kind) for agent, version, kind, _ in named} == {
        ("qualifier-agent", "2.3.0", "requalified"), ("lead-router", "0.9.4", "owner_changed"),
        ("followup-agent", "3.1.0", "marked_spam")}
    for agent, version, kind, n in named:
        assert table.loc[(agent, version), column[kind]] == n
    booked = dict(sql(demo_home, """
        SELECT coalesce((SELECT arg_max(a.agent_id, a.ts) FROM actions a WHERE a.status = 'ok'
                         AND a.resource_type = o.resource_type AND a.resource_id = o.resource_id AND a.ts <= o.ts
                         AND a.ts >= o.ts - INTERVAL 30 DAY), '(no agent action)') AS agent, count(*)
        FROM outcomes o WHERE o.kind = 'meeting_booked' AND o.ts >= ? AND o.ts < ? GROUP BY agent""", start, end))
    per_agent = table.groupby(level="Agent")["Meetings booked"].sum()
    assert {agent: n for agent, n in per_agent.items() if n} == booked
    ((actions,),) = sql(demo_home, "SELECT count(*) FROM actions WHERE agent_id = 'qualifier-agent' "
                                   "AND status = 'ok' AND ts >= ? AND ts < ?", start, end)
    assert table.loc[("qualifier-agent", "2.3.0"), "Actions (ok)"] == actions


@pytest.mark.parametrize("page", ["routing", "outcomes", "pipeline"])
def test_empty_home_says_what_to_send(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str) -> None:
    """On an empty home each page shows only its empty state, naming the command and endpoint to send data."""
    at = open_page(monkeypatch, Home.resolve(tmp_path / "home"), page)
    [info] = at.info
    sent = "POST /v1/outcomes" if page == "outcomes" else "POST /v1/actions"
    assert "agentwatch ingest" in info.value and sent in info.value
    assert not at.metric and not at.dataframe


def test_routing_without_owner_changes_asks_for_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With routed leads but no owner_changed outcome, the routing page asks for them instead of showing 100%."""
    home = Home.resolve(tmp_path / "home")
    store_events(home, actions=routed_lead(1, T0)[0])
    at = open_page(monkeypatch, home, "routing")
    [info] = at.info
    assert info.value.startswith("No owner_changed outcomes yet") and "corrects_event_id" in info.value
    assert not at.metric


def test_docs_define_every_kpi_and_control() -> None:
    """docs/dashboard.md names every KPI of dashboards/kpis.py in the pipeline table with its window, every
    control key of the business pages, and the thresholds the pages apply."""
    import re

    from agentwatch.dashboards import business

    docs = (Path(__file__).resolve().parents[1] / "docs" / "dashboard.md").read_text(encoding="utf-8")
    pipeline = docs[docs.index("### Pipeline quality"):docs.index("### Audit trail")]
    for spec in kpis.SPECS.values():
        window = "kept" if spec.horizon == kpis.KEPT else "conversion"
        assert re.search(rf"^\| {re.escape(spec.label)} \| {window} \|", pipeline, re.M), spec.label
    for key in ("pipeline_range", "pipeline_keep_days", "pipeline_conversion_days", "routing_range", "routing_by",
                "routing_keep_days", "outcomes_range", "outcomes_by"):
        assert f"`{key}`" in docs, key
    assert f"fewer than {kpis.MIN_LEADS} leads" in pipeline and f"under {kpis.INTERVAL_BELOW} leads" in pipeline
    assert f"{business.DEFAULT_KEEP_DAYS} (default)" in pipeline


def test_the_trend_table_says_which_window_each_day_has_had(monkeypatch: pytest.MonkeyPatch,
                                                            demo_weeks: Home) -> None:
    """A day is judged for a window only once the window has passed since it: days within 7 days of the data end
    are provisional for both; days 7 to 14 days back are judged for the kept window, provisional for conversion."""
    at = open_page(monkeypatch, demo_weeks, "pipeline")
    table = next(d.value for d in at.dataframe if "Conversion window" in d.value.columns)
    end = data_end(demo_weeks)
    for row in table.to_dict("records"):
        day_end = datetime.fromisoformat(row["Day"]).replace(tzinfo=end.tzinfo) + timedelta(days=1)
        assert row["Kept window"] == ("judged" if day_end + timedelta(days=7) <= end else "provisional"), row
        assert row["Conversion window"] == ("judged" if day_end + timedelta(days=14) <= end else "provisional"), row
    assert {"judged", "provisional"} <= set(table["Conversion window"]) and "judged" in set(table["Kept window"])


def test_routing_groups_too_small_say_so(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """By route destination: a destination with fewer than 30 leads has no accuracy and says 'not enough data';
    one under 400 leads shows its 95% interval around its accuracy; the chart draws neither small group."""
    at = open_page(monkeypatch, demo_weeks, "routing", routing_by="destination")
    table = at.dataframe[0].value
    small = table[table["Routed leads"] < kpis.MIN_LEADS]
    middle = table[(table["Routed leads"] >= kpis.MIN_LEADS) & (table["Routed leads"] < kpis.INTERVAL_BELOW)]
    assert len(small) and len(middle)
    assert small["Accuracy (%)"].isna().all() and (small["95% interval"] == kpis.NOT_ENOUGH).all()
    for row in middle.to_dict("records"):
        low, high = (float(x) for x in row["95% interval"].rstrip("%").split("-"))
        assert low < row["Accuracy (%)"] < high
    drawn = {row["key"] for row in charted(at) if "key" in row}
    assert drawn and not drawn & set(small["Route destination"])


def test_a_seven_day_cohort_has_no_whole_week_to_draw(monkeypatch: pytest.MonkeyPatch, demo_weeks: Home) -> None:
    """Grouped by week, a 7-day cohort ending mid-week holds two parts of weeks: listed as parts, not drawn as a
    trend."""
    at = open_page(monkeypatch, demo_weeks, "routing", routing_by="week")
    table = at.dataframe[0].value
    assert set(table["Week in the cohort"]) == {"part of it"}
    assert any("holds no whole week" in c.value for c in at.caption)


def test_a_note_names_the_kpis_that_moved_with_the_reply_rate() -> None:
    """Reply rate fell beyond noise and routing accuracy fell with it: bad news, told as such ('worse'), naming
    the accuracy; with nothing moving it is 'flat'."""
    def change(key: str, now: dict, before: dict) -> kpis.Change:
        return kpis.Change(kpis.measure(key, now), kpis.measure(key, before))

    now = {"leads": 1000, "replied": 100, "reassigned": 120}
    before = {"leads": 1000, "replied": 200, "reassigned": 50}
    text, tone = kpis.note({"reply_rate": change("reply_rate", now, before),
                            "routing_accuracy": change("routing_accuracy", now, before)})
    assert tone == "worse" and "Reply rate fell 10.0 points" in text and "routing accuracy fell 7.0 points" in text
    text, tone = kpis.note({"reply_rate": change("reply_rate", now, now),
                            "routing_accuracy": change("routing_accuracy", now, now)})
    assert tone == "flat"
