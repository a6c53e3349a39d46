"""Readers for CRM vendors' own payloads: each maps one API response onto an agentwatch model.

- :func:`snapshot_from_salesforce_describe`: ``GET /sobjects/{Object}/describe`` -> ``SchemaSnapshot``
- :func:`snapshot_from_hubspot_properties`: ``GET /crm/v3/properties/{objectType}`` -> ``SchemaSnapshot``

A payload of the wrong shape raises :class:`agentwatch.core.errors.FormatError` naming what is wrong and where.
"""

from agentwatch.collector.formats.hubspot import snapshot_from_hubspot_properties
from agentwatch.collector.formats.salesforce import snapshot_from_salesforce_describe

__all__ = ["snapshot_from_hubspot_properties", "snapshot_from_salesforce_describe"]
