"""The CRM schema snapshot: the fields of one CRM object at one moment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentwatch.schemas.common import Identifier, NonEmptyStr, Timestamp


class SchemaField(BaseModel):
    """One field of a CRM object."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Identifier
    type: NonEmptyStr = Field(
        description="Free text; commonly string, number, integer, boolean, date, datetime, picklist, "
        "reference, email."
    )
    nullable: bool = True
    label: str | None = None
    picklist_values: list[str] | None = None
    source_type: str | None = Field(None, description="The type as the source system names it.")


class SchemaSnapshot(BaseModel):
    """All fields of one CRM object as seen at ``taken_at``, format version 1."""

    model_config = ConfigDict(strict=True, extra="forbid", title="agentwatch schema snapshot v1")

    taken_at: Timestamp
    source: Identifier = Field(description="salesforce, hubspot, custom, ...")
    object: Identifier = Field(description="The CRM object, e.g. Lead, Opportunity, contacts.")
    fields: list[SchemaField]

    @model_validator(mode="after")
    def _field_names_are_unique(self) -> SchemaSnapshot:
        seen: set[str] = set()
        for index, field in enumerate(self.fields):
            if field.name in seen:
                raise ValueError(f"fields[{index}]: field name {field.name!r} appears twice")
            seen.add(field.name)
        return self
