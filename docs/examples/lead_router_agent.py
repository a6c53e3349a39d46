"""An example agent: routes inbound leads to owners, and tells agentwatch what it did.

It asks the guard before each lead and stops when agentwatch pauses it, records each CRM write as one action
(before, after, inputs, decision, confidence, latency), and reports a rep's correction as an outcome.

    agentwatch keys create --scope ingest --name lead-router     # prints the key once
    AGENTWATCH_URL=http://127.0.0.1:8000 AGENTWATCH_KEY=aw_... python docs/examples/lead_router_agent.py
"""

from __future__ import annotations

import os
import sys
from typing import Any

from agentwatch.client import Client

LEADS = [
    {"id": "00Q5e00000AbC01", "country": "DE", "employees": 120, "deal_stage": "new"},
    {"id": "00Q5e00000AbC02", "country": "US", "employees": 8, "deal_stage": "new"},
    {"id": "00Q5e00000AbC03", "country": "FR", "employees": 950, "deal_stage": "negotiation"},
]


class Crm:
    """Stands in for the CRM's API: the owner of each lead."""

    def __init__(self) -> None:
        self.owners: dict[str, str | None] = {lead["id"]: None for lead in LEADS}

    def owner(self, lead_id: str) -> dict[str, Any]:
        return {"OwnerId": self.owners[lead_id]}

    def set_owner(self, lead_id: str, owner: str) -> dict[str, Any]:
        self.owners[lead_id] = owner
        return {"OwnerId": owner}


def choose_owner(lead: dict[str, Any]) -> tuple[str, float]:
    """The agent's decision: who gets the lead, and how sure it is."""
    if lead["deal_stage"] != "new":
        return "rep-account-2", 0.95  # an open deal stays with its account team
    return ("rep-enterprise-1", 0.82) if lead["employees"] >= 100 else ("rep-smb-4", 0.7)


def main() -> int:
    crm = Crm()
    routed: list[str] = []  # event ids of the writes, to link the rep's correction to
    with Client(os.environ["AGENTWATCH_URL"], os.environ["AGENTWATCH_KEY"], agent_id="lead-router",
                agent_version="2.3.0", irreversible_actions=["email.send"]) as aw:
        for lead in LEADS:
            decision = aw.guard(action="crm.update_field")
            if not decision.allowed:
                print(f"paused: {decision.reason}; the remaining leads go to the human queue")
                break
            owner, confidence = choose_owner(lead)
            with aw.action("crm.update_field", resource=("lead", lead["id"]), before=crm.owner(lead["id"]),
                           inputs=lead, decision={"route_to": owner}, confidence=confidence) as act:
                act.after = crm.set_owner(lead["id"], owner)  # an exception here records status "error"
            routed.append(act.event_id)
            print(f"{lead['id']} -> {owner} ({act.event_id})")
        if routed:  # later, a rep moved the first lead to someone else: the decision was corrected
            aw.outcome("owner_changed", ("lead", LEADS[0]["id"]), actor="rep-04", field="OwnerId",
                       from_=crm.owners[LEADS[0]["id"]], to="rep-04", corrects_event_id=routed[0])
        aw.flush(timeout=30)  # on agentwatch's disk before we report; close() at the end of `with` flushes too
        stats = aw.stats
    print(f"sent {stats.sent}, duplicates {stats.duplicates}, refused {stats.refused}, dropped {stats.dropped}")
    return 0 if stats.refused == stats.dropped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
