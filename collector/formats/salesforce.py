"""Map a Salesforce sObject describe result onto a :class:`~schemas.snapshots.SchemaSnapshot`.

Input: the JSON body of ``GET /services/data/vXX.X/sobjects/{Object}/describe``, parsed, exactly as
Salesforce returns it (top-level ``name``, ``label``, ``fields`` and many keys we ignore, such as
``childRelationships``, ``recordTypeInfos`` and ``urls``). Only the describe of *one* object is
accepted; a ``describeGlobal`` response (``GET /sobjects``) or the basic-info response
(``GET /sobjects/{Object}``) is rejected with a message saying which endpoint to call instead.

Per field:

- ``name`` -> ``name``; ``label`` -> ``label``; ``nillable`` -> ``nullable``.
- ``type`` -> ``type`` through the table below; the Salesforce type is kept verbatim in
  ``source_type`` so nothing is lost.
- ``picklist_values``: the ``value`` of the *active* ``picklistValues`` entries, in the order Salesforce
  lists them, for picklist, multipicklist and combobox fields; ``None`` for every other type.
  Inactive values are left out: records may still hold them, but an agent can no longer write them.

Type mapping (Salesforce ``type`` -> common type):

=========================================================  ==============
id                                                         id
string, textarea, phone, url, encryptedstring, combobox    string
email                                                      email
picklist                                                   picklist
multipicklist                                              multipicklist
reference                                                  reference
boolean                                                    boolean
int, long                                                  integer
double, currency, percent                                  number
date / datetime / time                                     date / datetime / time
address, location                                          compound
base64                                                     binary
anyType                                                    any
complexvalue, json                                         json
=========================================================  ==============

combobox becomes ``string`` because it accepts free text; its suggested values still go to
``picklist_values``. A type not in the table (Salesforce adds types now and then) is kept as is, so a
new type shows up in the snapshot rather than failing the whole describe.

The describe result carries no time, so ``taken_at`` is the argument, or now (UTC) by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from agentwatch.collector.formats.common import keys_preview, resolve_taken_at, summarize_validation_error
from agentwatch.core.errors import FormatError
from agentwatch.schemas.snapshots import SchemaField, SchemaSnapshot

_PREFIX = "salesforce describe"

# Keyed by the lower-cased Salesforce type: the API spells one of them "anyType".
_TYPE_MAP: dict[str, str] = {
    "id": "id",
    "string": "string",
    "textarea": "string",
    "phone": "string",
    "url": "string",
    "encryptedstring": "string",
    "combobox": "string",
    "email": "email",
    "picklist": "picklist",
    "multipicklist": "multipicklist",
    "reference": "reference",
    "boolean": "boolean",
    "int": "integer",
    "long": "integer",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "date": "date",
    "datetime": "datetime",
    "time": "time",
    "address": "compound",
    "location": "compound",
    "base64": "binary",
    "anytype": "any",
    "complexvalue": "json",
    "json": "json",
}

# Types whose picklistValues are meaningful; other fields carry an empty list we ignore.
_PICKLIST_TYPES = frozenset({"picklist", "multipicklist", "combobox"})


def snapshot_from_salesforce_describe(
    payload: dict,
    *,
    taken_at: datetime | None = None,
    object_name: str | None = None,
    source_name: str = "salesforce",
) -> SchemaSnapshot:
    """Map one sObject describe result onto a schema snapshot.

    ``object_name`` defaults to the payload's ``name``; when both are given they must match.
    ``taken_at`` must carry a UTC offset and is stored in UTC; it defaults to now.
    Raises :class:`agentwatch.core.errors.FormatError` when the payload is not a describe result.
    """
    when = resolve_taken_at(taken_at)
    _check_top_level(payload)
    obj = _resolve_object_name(payload, object_name)

    raw_fields = payload["fields"]
    fields: list[SchemaField] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_fields):
        field = _map_field(index, raw)
        if field.name in seen:
            raise FormatError(
                f"{_PREFIX}: fields[{index}] ({field.name!r}): duplicate field name, "
                f"already at fields[{seen[field.name]}]"
            )
        seen[field.name] = index
        fields.append(field)

    try:
        return SchemaSnapshot(taken_at=when, source=source_name, object=obj, fields=fields)
    except ValidationError as exc:
        raise FormatError(f"{_PREFIX}: cannot build the snapshot: {summarize_validation_error(exc)}") from None


def _check_top_level(payload: Any) -> None:
    """Reject anything that is not one object's describe result, saying what it looks like instead."""
    if isinstance(payload, list):
        # Salesforce reports REST errors as a list of {"errorCode", "message"} objects.
        if payload and all(isinstance(item, Mapping) and "errorCode" in item for item in payload):
            errors = "; ".join(f"{item.get('errorCode')}: {item.get('message')}" for item in payload)
            raise FormatError(f"{_PREFIX}: got a Salesforce error response, not a describe result: {errors}")
        raise FormatError(
            f"{_PREFIX}: expected a JSON object (the describe result); got a list of {len(payload)} items"
        )
    if not isinstance(payload, Mapping):
        raise FormatError(
            f"{_PREFIX}: expected a JSON object (the describe result); got {type(payload).__name__}"
        )
    if "fields" not in payload:
        if isinstance(payload.get("sobjects"), list):
            raise FormatError(
                f"{_PREFIX}: got a describeGlobal response (top-level 'sobjects' list of "
                f"{len(payload['sobjects'])} objects), which has no fields; pass the body of "
                "GET /services/data/vXX.X/sobjects/{Object}/describe for one object"
            )
        if "objectDescribe" in payload:
            basic = payload["objectDescribe"]
            name = basic.get("name") if isinstance(basic, Mapping) else None
            raise FormatError(
                f"{_PREFIX}: got the basic-info response of GET /sobjects/{name or '{Object}'} "
                "(top-level 'objectDescribe' and 'recentItems'), which has no fields; "
                "call .../sobjects/{Object}/describe instead"
            )
        if "results" in payload:
            raise FormatError(
                f"{_PREFIX}: expected a top-level 'fields' list; got a top-level 'results' key "
                "(is this a HubSpot properties response? use --format hubspot)"
            )
        raise FormatError(f"{_PREFIX}: expected a top-level 'fields' list; got keys {keys_preview(payload)}")
    if not isinstance(payload["fields"], list):
        raise FormatError(
            f"{_PREFIX}: top-level 'fields' must be a list; got {type(payload['fields']).__name__}"
        )


def _resolve_object_name(payload: Mapping[str, Any], object_name: str | None) -> str:
    """The object's API name: the argument or the payload's ``name``, which must agree."""
    if object_name is not None and (not isinstance(object_name, str) or not object_name):
        raise FormatError(f"{_PREFIX}: object_name must be a non-empty string; got {object_name!r}")
    payload_name = payload.get("name")
    if payload_name is not None and (not isinstance(payload_name, str) or not payload_name):
        raise FormatError(f"{_PREFIX}: top-level 'name' must be a non-empty string; got {payload_name!r}")
    if object_name is None and payload_name is None:
        raise FormatError(
            f"{_PREFIX}: the payload has no top-level 'name'; pass object_name to say which object it is"
        )
    if object_name is not None and payload_name is not None and object_name != payload_name:
        raise FormatError(
            f"{_PREFIX}: the payload describes {payload_name!r} but object_name is {object_name!r}"
        )
    return object_name if object_name is not None else str(payload_name)


def _map_field(index: int, raw: Any) -> SchemaField:
    """Map ``fields[index]``; every error names the index and, when known, the field."""
    if not isinstance(raw, Mapping):
        raise FormatError(f"{_PREFIX}: fields[{index}]: expected an object; got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problem = "missing 'name'" if name is None else f"'name' must be a non-empty string; got {name!r}"
        raise FormatError(f"{_PREFIX}: fields[{index}]: {problem}")
    where = f"{_PREFIX}: fields[{index}] ({name!r})"

    sf_type = raw.get("type")
    if sf_type is None:
        raise FormatError(f"{where}: missing 'type'")
    if not isinstance(sf_type, str) or not sf_type:
        raise FormatError(f"{where}: 'type' must be a non-empty string; got {sf_type!r}")

    nillable = raw.get("nillable")
    if nillable is None:
        raise FormatError(f"{where}: missing 'nillable'")
    if not isinstance(nillable, bool):
        raise FormatError(f"{where}: 'nillable' must be true or false; got {nillable!r}")

    label = raw.get("label")
    if label is not None and not isinstance(label, str):
        raise FormatError(f"{where}: 'label' must be a string; got {label!r}")

    picklist_values = None
    if sf_type.lower() in _PICKLIST_TYPES:
        picklist_values = _active_picklist_values(where, raw.get("picklistValues"))

    try:
        return SchemaField(
            name=name,
            type=_TYPE_MAP.get(sf_type.lower(), sf_type),
            nullable=nillable,
            label=label,
            picklist_values=picklist_values,
            source_type=sf_type,
        )
    except ValidationError as exc:
        raise FormatError(f"{where}: {summarize_validation_error(exc)}") from None


def _active_picklist_values(where: str, entries: Any) -> list[str]:
    """The ``value`` of each active entry, in Salesforce's order."""
    if entries is None:
        raise FormatError(f"{where}: missing 'picklistValues'")
    if not isinstance(entries, list):
        raise FormatError(f"{where}: 'picklistValues' must be a list; got {type(entries).__name__}")
    values: list[str] = []
    for position, entry in enumerate(entries):
        at = f"{where}: picklistValues[{position}]"
        if not isinstance(entry, Mapping):
            raise FormatError(f"{at}: expected an object; got {type(entry).__name__}")
        value = entry.get("value")
        if not isinstance(value, str):
            problem = "missing 'value'" if value is None else f"'value' must be a string; got {value!r}"
            raise FormatError(f"{at}: {problem}")
        active = entry.get("active")
        if not isinstance(active, bool):
            problem = (
                "missing 'active'" if active is None else f"'active' must be true or false; got {active!r}"
            )
            raise FormatError(f"{at} ({value!r}): {problem}")
        if active:
            values.append(value)
    return values

