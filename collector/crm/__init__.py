"""The CRM schema pollers: Salesforce describe and HubSpot properties, fetched on a schedule and stored as
schema snapshots when the fields change (docs/crm.md)."""
