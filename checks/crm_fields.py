"""Which CRM field an agent input key names: by name (case-insensitive) or through ``fields:`` in the config."""

from __future__ import annotations

from agentwatch.checks.config import ChecksConfig


def key_reads_field(key: str, object_name: str, field_name: str, config: ChecksConfig) -> bool:
    """Does the input key `key` read `object_name.field_name`?"""
    mapped = config.fields.get(key)
    if mapped is not None:
        target_object, target_field = mapped.split(".")
        return target_object.lower() == object_name.lower() and target_field.lower() == field_name.lower()
    return key.lower() == field_name.lower()


def keys_reading(object_name: str, field_name: str, keys: list[str], config: ChecksConfig) -> list[str]:
    """The input keys among `keys` that read `object_name.field_name`."""
    return [k for k in keys if key_reads_field(k, object_name, field_name, config)]
