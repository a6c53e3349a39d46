"""Decide which notifications are due, from the incidents as they are now and what was already sent.

Planning compares state, it does not react to events: each pass looks at every incident still open (and the
groups not yet told they resolved) and at what each destination was last told about each group. So running
it twice sends nothing twice, and a crash between a check run and the notification loses nothing: the next
pass sees the difference. Per destination and group it sends, in the Alertmanager way:

- ``trigger`` once the group's first incident has been open for ``group_wait``;
- ``update`` when its severity rose (at once) or incidents joined it (after ``group_interval``);
- ``acknowledge`` when every open incident of the group was acknowledged;
- ``repeat`` when it is still open ``repeat_interval`` after the last message (not to PagerDuty, which
  re-notifies by its own escalation policy);
- ``resolve`` when every incident of the group resolved.

Incidents below ``min_severity`` and silenced incidents are left out (still recorded; a silenced incident
still open when its silence ends is sent then). A group already sent whose open incidents are all silenced
gets no update, acknowledge or repeat, but still its resolve, so no destination keeps a stale open alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from agentwatch.alerts.config import AlertsConfig
from agentwatch.alerts.grouping import assign_groups
from agentwatch.alerts.properties import incident_properties
from agentwatch.checks.incidents import incident_number
from agentwatch.core.severity import Severity
from agentwatch.schemas.incidents import Incident
from agentwatch.schemas.notifications import Notification, NotificationEvent


class Silencer(Protocol):
    def matches(self, properties: dict[str, list[str]]) -> bool: ...


@dataclass
class SentGroup:
    """What one destination was last told about one group."""

    revision: int
    status: str
    severity: str
    members: list[str]
    first_sent_at: datetime
    last_sent_at: datetime


@dataclass
class PlanState:
    """What planning remembers between passes: group membership and what each destination was told."""

    groups: dict[str, str] = field(default_factory=dict)  # incident id -> group key
    sent: dict[tuple[str, str], SentGroup] = field(default_factory=dict)  # (destination, group key) -> last told
    changed_groups: dict[str, str] = field(default_factory=dict)  # assignments made by the last pass
    changed_sent: set[tuple[str, str]] = field(default_factory=set)  # sent rows written by the last pass

    def open_members(self) -> set[str]:
        """Incidents of groups some destination has not yet been told resolved (planning needs them all)."""
        return {m for s in self.sent.values() if s.status != "resolved" for m in s.members}


@dataclass
class _View:
    key: str
    members: list[Incident]
    status: str
    severity: str


def plan(incidents: Iterable[Incident], state: PlanState, config: AlertsConfig, silences: Sequence[Silencer],
         now: datetime, install_id: str) -> list[Notification]:
    """The notifications due at `now`; updates `state` as if they were sent (the caller queues them)."""
    known = {i.id: i for i in incidents}
    state.changed_groups = assign_groups(known, state.groups, {k for _, k in state.sent}, config.group_wait)
    state.changed_sent = set()
    wanted: dict[tuple[str, str], list[Incident]] = {}
    repeat_every: dict[tuple[str, str], timedelta] = {}
    silenced: set[str] = set()
    for incident in known.values():
        if Severity(incident.severity) < config.min_severity:
            continue
        properties = incident_properties(incident)
        if any(s.matches(properties) for s in silences):
            silenced.add(incident.id)
            continue
        group = state.groups[incident.id]
        for destination, route in config.routes_for(properties):
            slot = (destination, group)
            wanted.setdefault(slot, []).append(incident)
            interval = route.repeat_interval if route and route.repeat_interval else config.repeat_interval
            repeat_every[slot] = min(repeat_every.get(slot, interval), interval)
    notifications = []
    for slot in sorted(set(wanted) | {s for s, sent in state.sent.items() if sent.status != "resolved"}):
        sent = state.sent.get(slot)
        view = _view(slot[1], wanted.get(slot, []), sent, known)
        if view is None:
            continue
        # PagerDuty keeps its own incident open and re-notifies by its escalation policy: no repeats there.
        pages = getattr(config.destinations.get(slot[0]), "type", None) == "pagerduty"
        event = _due(view, sent, now, config, None if pages else repeat_every.get(slot, config.repeat_interval),
                     silenced)
        if event:
            notifications.append(_notify(slot, view, event, sent, now, config, install_id))
            state.sent[slot] = SentGroup(
                revision=(sent.revision + 1) if sent else 1, status=view.status, severity=view.severity,
                members=[m.id for m in view.members], first_sent_at=sent.first_sent_at if sent else now,
                last_sent_at=now)
            state.changed_sent.add(slot)
    return notifications


def _view(key: str, wanted: list[Incident], sent: SentGroup | None, known: dict[str, Incident]) -> _View | None:
    """The group as this destination sees it: what was sent before, plus incidents eligible now (an incident
    that resolved before it was ever sent is left out)."""
    members = {m: known[m] for m in (sent.members if sent else []) if m in known}
    for incident in wanted:
        if incident.id not in members and incident.status != "resolved":
            members[incident.id] = incident
    if not members:
        return None
    ordered = sorted(members.values(), key=lambda i: (i.id != key, bool(i.caused_by), incident_number(i.id)))
    unresolved = [i for i in ordered if i.status != "resolved"]
    if not unresolved:
        status = "resolved"
    elif all(i.status == "acknowledged" for i in unresolved):
        status = "acknowledged"
    else:
        status = "open"
    severity = Severity.highest(i.severity for i in unresolved or ordered)
    return _View(key, ordered, status, severity)


def _due(view: _View, sent: SentGroup | None, now: datetime, config: AlertsConfig,
         repeat_every: timedelta | None, silenced: set[str]) -> NotificationEvent | None:
    if view.status != "resolved" and all(m.id in silenced for m in view.members if m.status != "resolved"):
        return None  # everything still open in the group is silenced; a resolve still goes out
    if sent is None or sent.status == "resolved":
        if view.status == "resolved":
            return None
        first_opened = min(i.opened_at for i in view.members)
        return "trigger" if now - first_opened >= config.group_wait or sent is not None else None
    if view.status == "resolved":
        return "resolve"
    since_last = now - sent.last_sent_at
    if Severity(view.severity) > sent.severity:
        return "update"
    joined = {m.id for m in view.members if m.status != "resolved"} - set(sent.members)
    if joined and since_last >= config.group_interval:
        return "update"
    if view.status == "acknowledged" and sent.status == "open":
        return "acknowledge"
    if repeat_every is not None and since_last >= repeat_every:
        return "repeat"
    return None


def _notify(slot: tuple[str, str], view: _View, event: NotificationEvent, sent: SentGroup | None, now: datetime,
            config: AlertsConfig, install_id: str) -> Notification:
    destination, key = slot
    revision = (sent.revision + 1) if sent else 1
    root = view.members[0]
    subject = " ".join(root.subject.values())
    related = len(view.members) - 1
    title = f"[{view.severity}] {root.check} {subject}".rstrip()
    if related:
        title += f" (+{related} related)"
    return Notification(
        id=f"aw-{install_id}-{destination}-{key}-{revision}", event=event, destination=destination, group_key=key,
        dedup_key=f"agentwatch-{install_id}-{key}", status=view.status, severity=view.severity, title=title,
        incidents=view.members, dashboard_url=f"{config.dashboard_url.rstrip('/')}/?incident={key}", created_at=now)
