"""The bounds every input is held to: the ``limits:`` section of ``agentwatch.yaml``.

One bad or hostile input must cost neither its neighbours nor the machine: each bound below is checked
before the work it limits is done (a batch's item count before any item is validated, decompressed bytes
while inflating, nesting depth before an event is parsed), and the error names the bound and its setting.
docs/reliability.md lists them; a test keeps that list equal to these fields.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1 << 20


class Limits(BaseModel):
    """Bounds on what one request, file, line or event may cost."""

    model_config = ConfigDict(extra="forbid")

    max_batch_items: int = Field(
        10_000, gt=0, description="Events in one API request; a larger batch is refused whole (413) before any "
                                  "event is read, so split it.")
    max_error_details: int = Field(
        100, gt=0, description="Refused events itemised in one API answer or one command's output; the rest are "
                               "counted (and, for files, all are written to the rejects folder).")
    max_event_bytes: int = Field(
        8 * MIB, gt=0, description="Bytes of one event (one JSONL line, one CSV row); a longer one is refused on "
                                   "its own without being held in memory whole.")
    max_depth: int = Field(
        64, gt=0, description="Nesting depth of one event (objects and arrays inside `inputs`, `decision`, ...); "
                              "a deeper event is refused on its own.")
    max_decompressed_bytes: int = Field(
        4096 * MIB, gt=0, description="Bytes a compressed (.gz) input file may inflate to; reading stops there "
                                      "with one error, keeping the events read before it.")
    max_rejects_per_file: int = Field(
        100_000, gt=0, description="Refused events in one input file; past it, reading that file stops with one "
                                   "error (the valid events before are kept, the other files are read): a file "
                                   "this wrong is the wrong file or a broken producer, and explaining every "
                                   "refusal of a billion-line file would take days.")
    requests_per_second: float = Field(
        200.0, gt=0, description="API requests one key may make per second, sustained (bursts of twice that are "
                                 "let through); more are answered 429 with Retry-After.")
    auth_failures_per_minute: int = Field(
        30, gt=0, description="Requests with a missing, unknown or revoked key one client address may make per "
                              "minute (API and dashboard key prompt); more are answered 429 with Retry-After.")
