"""Map a HubSpot CRM v3 properties response onto a :class:`~schemas.snapshots.SchemaSnapshot`.

Input: the JSON body of ``GET /crm/v3/properties/{objectType}``, parsed, exactly as HubSpot returns
it: ``{"results": [property, ...]}``, each property with ``name``, ``label``, ``type``, ``fieldType``,
``options``, ``hidden``, ``archived``, ``modificationMetadata`` and more. The response does not say
which object it describes, so the caller passes ``object_name`` (``contacts``, ``deals``, ``p_my_object``).

Per property:

- Archived properties (``"archived": true``) are left out: they no longer exist for records.
  Hidden properties are kept: they still hold data, they are only hidden in HubSpot's UI.
- ``name`` -> ``name``; ``label`` -> ``label``; ``nullable`` is always ``True`` (HubSpot has no
  required properties at the schema level).
- ``type`` -> ``type`` through the table below; HubSpot's ``type`` is kept verbatim in ``source_type``.
- ``picklist_values``: for picklist and multipicklist, the ``value`` of the options that are not
  ``hidden``, in response order; ``None`` for every other type. When the options live outside the
  property (``"externalOptions": true``, e.g. ``hubspot_owner_id``) the list in the response is not
  the set of allowed values, so ``picklist_values`` is ``None`` there too.

Type mapping (HubSpot ``type`` / ``fieldType`` -> common type):

=================================================  ==============
enumeration (fieldType booleancheckbox)            boolean
enumeration (fieldType checkbox: multi-select)     multipicklist
enumeration (any other fieldType)                  picklist
bool                                               boolean
number                                             number
string, phone_number                               string
date / datetime                                    date / datetime
=================================================  ==============

``checkbox`` is HubSpot's "multiple checkboxes" field, whose value is a ``;``-separated set, which is
what Salesforce calls a multipicklist. A ``type`` not in the table (e.g. ``object_coordinates``,
``json``) is kept as is, so a new type shows up in the snapshot rather than failing the response.

The response carries no time for the whole schema, so ``taken_at`` is the argument, or now (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from agentwatch.collector.formats.common import keys_preview, resolve_taken_at, summarize_validation_error
from agentwatch.core.errors import FormatError
from agentwatch.schemas.snapshots import SchemaField, SchemaSnapshot

_PREFIX = "hubspot properties"

_TYPE_MAP: dict[str, str] = {
    "enumeration": "picklist",
    "bool": "boolean",
    "number": "number",
    "string": "string",
    "phone_number": "string",
    "date": "date",
    "datetime": "datetime",
}

# fieldType overrides for type "enumeration": the widget decides how many values a record holds.
_ENUMERATION_FIELD_TYPES: dict[str, str] = {
    "booleancheckbox": "boolean",
    "checkbox": "multipicklist",
}


def snapshot_from_hubspot_properties(
    payload: dict,
    *,
    object_name: str,
    taken_at: datetime | None = None,
    source_name: str = "hubspot",
) -> SchemaSnapshot:
    """Map one object type's properties response onto a schema snapshot.

    ``taken_at`` must carry a UTC offset and is stored in UTC; it defaults to now.
    Raises :class:`agentwatch.core.errors.FormatError` when the payload is not a properties response.
    """
    when = resolve_taken_at(taken_at)
    if not isinstance(object_name, str) or not object_name:
        raise FormatError(
            f"{_PREFIX}: object_name must be a non-empty string such as 'contacts'; got {object_name!r}"
        )
    results = _results(payload)

    fields: list[SchemaField] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(results):
        field = _map_property(index, raw)
        if field is None:
            continue
        if field.name in seen:
            raise FormatError(
                f"{_PREFIX}: results[{index}] ({field.name!r}): duplicate property name, "
                f"already at results[{seen[field.name]}]"
            )
        seen[field.name] = index
        fields.append(field)

    try:
        return SchemaSnapshot(taken_at=when, source=source_name, object=object_name, fields=fields)
    except ValidationError as exc:
        raise FormatError(f"{_PREFIX}: cannot build the snapshot: {summarize_validation_error(exc)}") from None


def _results(payload: Any) -> list[Any]:
    """The ``results`` list, or an error saying what the payload looks like instead."""
    if isinstance(payload, list):
        raise FormatError(
            f"{_PREFIX}: expected a JSON object with a top-level 'results' list; got a bare list of "
            f"{len(payload)} items (the legacy v1/v2 properties endpoints return one; use "
            "GET /crm/v3/properties/{objectType})"
        )
    if not isinstance(payload, Mapping):
        raise FormatError(
            f"{_PREFIX}: expected a JSON object with a top-level 'results' list; got {type(payload).__name__}"
        )
    if "results" not in payload:
        if payload.get("status") == "error" and "message" in payload:
            raise FormatError(
                f"{_PREFIX}: got a HubSpot error response, not a properties list: "
                f"{payload.get('category', 'error')}: {payload['message']}"
            )
        if "name" in payload and ("type" in payload or "fieldType" in payload):
            raise FormatError(
                f"{_PREFIX}: got a single property ({payload['name']!r}), not a properties response; "
                "pass the whole body of GET /crm/v3/properties/{objectType}, {'results': [...]}"
            )
        if isinstance(payload.get("fields"), list):
            raise FormatError(
                f"{_PREFIX}: expected a top-level 'results' list; got a top-level 'fields' list "
                "(is this a Salesforce describe? use --format salesforce)"
            )
        raise FormatError(
            f"{_PREFIX}: expected a top-level 'results' list; got keys {keys_preview(payload)} "
            "(did you pass a single property or a search response?)"
        )
    results = payload["results"]
    if not isinstance(results, list):
        raise FormatError(f"{_PREFIX}: top-level 'results' must be a list; got {type(results).__name__}")
    return results


def _map_property(index: int, raw: Any) -> SchemaField | None:
    """Map ``results[index]``, or ``None`` when it is archived; errors name the index and property."""
    if not isinstance(raw, Mapping):
        raise FormatError(f"{_PREFIX}: results[{index}]: expected an object; got {type(raw).__name__}")
    name = raw.get("name")
    if name is None and "id" in raw and isinstance(raw.get("properties"), Mapping):
        # A search or list-objects response also has "results", but of records.
        raise FormatError(
            f"{_PREFIX}: results[{index}] is a CRM record (it has 'id' and 'properties'), not a property "
            "definition; did you pass a search or list-objects response instead of "
            "GET /crm/v3/properties/{objectType}?"
        )
    if not isinstance(name, str) or not name:
        problem = "missing 'name'" if name is None else f"'name' must be a non-empty string; got {name!r}"
        raise FormatError(f"{_PREFIX}: results[{index}]: {problem}")
    where = f"{_PREFIX}: results[{index}] ({name!r})"

    archived = raw.get("archived", False)
    if not isinstance(archived, bool):
        raise FormatError(f"{where}: 'archived' must be true or false; got {archived!r}")
    if archived:
        return None

    hs_type = _required_str(where, raw, "type")
    field_type = _required_str(where, raw, "fieldType")
    label = raw.get("label")
    if label is not None and not isinstance(label, str):
        raise FormatError(f"{where}: 'label' must be a string; got {label!r}")

    common_type = _TYPE_MAP.get(hs_type, hs_type)
    if hs_type == "enumeration":
        common_type = _ENUMERATION_FIELD_TYPES.get(field_type, common_type)

    picklist_values = None
    if common_type in ("picklist", "multipicklist"):
        options = _visible_option_values(where, raw.get("options"))
        external = raw.get("externalOptions", False)
        if not isinstance(external, bool):
            raise FormatError(f"{where}: 'externalOptions' must be true or false; got {external!r}")
        picklist_values = None if external else options

    try:
        return SchemaField(
            name=name,
            type=common_type,
            nullable=True,
            label=label,
            picklist_values=picklist_values,
            source_type=hs_type,
        )
    except ValidationError as exc:
        raise FormatError(f"{where}: {summarize_validation_error(exc)}") from None


def _required_str(where: str, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        raise FormatError(f"{where}: missing {key!r}")
    if not isinstance(value, str) or not value:
        raise FormatError(f"{where}: {key!r} must be a non-empty string; got {value!r}")
    return value


def _visible_option_values(where: str, options: Any) -> list[str]:
    """The ``value`` of each option not marked ``hidden``, in response order."""
    if options is None:
        raise FormatError(f"{where}: missing 'options'")
    if not isinstance(options, list):
        raise FormatError(f"{where}: 'options' must be a list; got {type(options).__name__}")
    values: list[str] = []
    for position, option in enumerate(options):
        at = f"{where}: options[{position}]"
        if not isinstance(option, Mapping):
            raise FormatError(f"{at}: expected an object; got {type(option).__name__}")
        value = option.get("value")
        if not isinstance(value, str):
            problem = "missing 'value'" if value is None else f"'value' must be a string; got {value!r}"
            raise FormatError(f"{at}: {problem}")
        hidden = option.get("hidden", False)
        if not isinstance(hidden, bool):
            raise FormatError(f"{at} ({value!r}): 'hidden' must be true or false; got {hidden!r}")
        if not hidden:
            values.append(value)
    return values

