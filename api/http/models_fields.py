"""Request and response bodies of the field updates: ``PATCH /collections/{name}/items/{id}`` and
its batch form ``POST /collections/{name}/items/update`` (no encoder runs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .models import FieldName, ItemId, _Request

__all__ = ["FieldsPatch", "FieldsUpdate", "FieldsUpdateRequest", "FieldsUpdateResponse"]


class FieldsPatch(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"set": {"price": 12.5, "tags": ["sale"]}, "remove": ["discontinued"]}]})

    set: dict[FieldName, Any] = Field(default_factory=dict,
                                      description="Fields to set; a new name adds a field.")
    remove: list[FieldName] = Field(default_factory=list,
                                    description="Fields to empty on this item (set to null).")

    @model_validator(mode="after")
    def _something(self) -> FieldsPatch:
        if not self.set and not self.remove:
            raise ValueError("give fields to 'set' or to 'remove'")
        if both := set(self.set) & set(self.remove):
            raise ValueError(f"fields both set and removed: {sorted(both)}")
        return self


class FieldsUpdate(FieldsPatch):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "doc-1", "set": {"price": 12.5}}]})

    id: ItemId


class FieldsUpdateRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"updates": [{"id": "doc-1", "set": {"price": 12.5}},
                     {"id": "doc-2", "remove": ["price"]}]}]})

    updates: list[FieldsUpdate] = Field(min_length=1)


class FieldsUpdateResponse(BaseModel):
    updated: int = Field(description="Items whose fields changed (no item was re-encoded).")
