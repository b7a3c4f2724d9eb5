"""Request fields that take a JSON value of their own type only.

DRF's IntegerField also takes "3", "3.0" and 3.0, and its CharField takes 3 or 0.0 as text: a
client sending the wrong type would never learn of it, and the schema (integer, string) would
say one thing while the API accepts another.
"""

from typing import Any

from rest_framework import serializers


class JsonIntegerField(serializers.IntegerField):
    """An integer that arrives as a JSON integer."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonCharField(serializers.CharField):
    """Text that arrives as a JSON string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
