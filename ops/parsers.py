"""The JSON request parser every API uses: a body it cannot read is a 400, never a 500."""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, also refusing bodies nested too deeply for Python's decoder.

    `json` recurses once per nesting level, so `[[[[...]]]]` well within the body size limit
    raises RecursionError, which DRF's parser (catching only ValueError) lets through as a 500.
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from exc
