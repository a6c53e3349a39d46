"""Validating a batch of events and logging the valid ones: one bad event is refused on its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from agentwatch.app.api.body import TooDeep, depth_message, parse_batch, too_deep
from agentwatch.app.api.errors import EventRejection, error_response
from agentwatch.app.api.storage import DiskFull
from agentwatch.app.metrics import count_events
from agentwatch.collector.ingest.rejects import field_errors
from agentwatch.collector.ingest.screen import NON_FINITE_MESSAGE, non_finite_field
from agentwatch.collector.wal import WriteAheadLog
from agentwatch.core.errors import StoreFullError
from agentwatch.core.limits import Limits
from agentwatch.store.datasets import Dataset
from agentwatch.store.space import is_no_space


def _problems(text: bytes, validate: Callable[[], Any], limits: Limits) -> list[dict[str, str]] | None:
    """Why one item (as `text`) is refused (field, message pairs), or None when it is a valid event."""
    depth = too_deep(text, limits)
    if depth is not None:
        return [{"field": "", "message": depth_message(depth, limits)}]
    if (b"Infinity" in text or b"NaN" in text) and (field := non_finite_field(text)) is not None:
        return [{"field": field, "message": NON_FINITE_MESSAGE}]  # the parser reads 1e999 as inf: Infinity here
    try:
        validate()
    except ValidationError as exc:
        return [asdict(error) for error in field_errors(exc)]
    return None


def check_events(dataset: Dataset, items: list[Any], limits: Limits, built_here: bool = False
                 ) -> tuple[list[str], list[bytes], int, list[dict[str, Any]]]:
    """Validate each item with the dataset's model, on the very JSON text the WAL will keep.

    Events the server built itself (`built_here`: OTLP spans mapped from decoded protobuf, holding only JSON
    types) are validated as the Python objects that text is written from, which pydantic does a third faster
    with the same verdict (tests/test_otlp_mapping.py holds the two modes equal); the text's own rules (depth,
    non-finite numbers) still run on the text.

    Returns the distinct valid events' ids and JSON lines (original keys, unknown ones too), the
    number of ids repeated inside the batch, and one EventRejection dict per refused item.
    """
    validate_text, validate_object = dataset.model.model_validate_json, dataset.model.model_validate
    to_json = pydantic_core.to_json  # compact, UTF-8, several times faster than json.dumps
    lines: dict[str, bytes] = {}
    repeated = 0
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, TooDeep):
            refused.append(EventRejection(index=index, event_id=item.event_id, errors=[
                {"field": "", "message": depth_message(item.depth, limits)}]).model_dump())
            continue
        text = to_json(item)
        errors = _problems(text, partial(validate_object, item) if built_here else partial(validate_text, text), limits)
        if errors is not None:
            event_id = item.get("event_id") if isinstance(item, dict) else None
            refused.append(EventRejection(
                index=index, event_id=event_id if isinstance(event_id, str) else None, errors=errors
            ).model_dump())
            continue
        event_id = item["event_id"]
        if event_id in lines:
            repeated += 1
        else:
            lines[event_id] = text
    return list(lines), list(lines.values()), repeated, refused


def ingest_events(wal: WriteAheadLog, disk_full: DiskFull, dataset: Dataset, body: bytes,
                  limits: Limits) -> JSONResponse:
    """Log a batch's valid events durably; 200 when all were valid, else 422 itemising the refused ones."""
    noun = f"{dataset.name.removesuffix('s')} event"
    items = parse_batch(body, noun, limits)
    ids, lines, repeated, refused = check_events(dataset, items, limits)
    accepted, duplicates = log_events(wal, disk_full, dataset, ids, lines)
    duplicates += repeated
    count_events(f"/v1/{dataset.name}", dataset.name, accepted, duplicates, len(refused))
    if refused:
        return error_response(
            422,
            "invalid_events",
            f"{len(refused)} of {len(items)} {noun}s refused{shown(len(refused), limits)}: fix the fields named in "
            f"details (each event by its index in the batch and its event_id) and send only those again; the "
            f"{accepted + duplicates} valid events of this batch were kept ({accepted} accepted, {duplicates} "
            "duplicates)",
            refused[:limits.max_error_details],
            extra={"accepted": accepted, "duplicates": duplicates},
        )
    return JSONResponse({"accepted": accepted, "duplicates": duplicates})


def log_events(wal: WriteAheadLog, disk_full: DiskFull, dataset: Dataset, ids: list[str], lines: list[bytes]
               ) -> tuple[int, int]:
    """Log valid events durably: (accepted, duplicates); a full disk is the 507 that acknowledges nothing."""
    if not ids:
        return 0, 0
    try:
        accepted, duplicates = wal.submit(dataset.name, ids, lines)
    except (StoreFullError, OSError) as exc:
        if not is_no_space(exc) or wal.failure:  # a failed fsync needs a restart: the generic 503 says so
            raise
        raise disk_full.refused_batch() from None
    disk_full.wrote()
    return accepted, duplicates


def shown(refused: int, limits: Limits) -> str:
    """Says that details list only the first refusals, when they do."""
    if refused <= limits.max_error_details:
        return ""
    return (f" (details list the first {limits.max_error_details}, setting limits.max_error_details; the "
            "others are counted here)")
