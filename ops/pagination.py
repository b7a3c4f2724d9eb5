"""The list pagination every API uses: ?limit=&offset= with a bounded page size.

A value that is not a whole number is refused (400) instead of silently read as the default:
`?offset=null` answering the first page looks like success to a client with a bug.
"""

from typing import Any

from rest_framework import exceptions, pagination
from rest_framework.request import Request

# Digits beyond this are a number larger than any table: read as "past the end" instead of parsed.
_MAX_DIGITS = 18


def _whole_number(request: Request, name: str, *, minimum: int) -> int | None:
    """The parameter's value; None when absent; 400 when not one whole number >= minimum."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    value = values[0]
    if (
        len(values) > 1
        or not (value.isascii() and value.isdigit())
        or int(value[: _MAX_DIGITS + 1]) < minimum
    ):
        raise exceptions.ValidationError({name: [f"Must be one whole number of at least {minimum}."]})
    return 10**_MAX_DIGITS if len(value) > _MAX_DIGITS else int(value)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    # Without a bound, ?limit=10**20 reached PostgreSQL as LIMIT and overflowed bigint (a 500);
    # a bound also keeps one request from reading a whole table.
    max_limit = 500

    def get_limit(self, request: Request) -> int | None:
        limit = _whole_number(request, self.limit_query_param, minimum=1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, minimum=0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"]["minimum"] = 1
        limit["description"] = f"Number of results to return per page (at most {self.max_limit})."
        offset["schema"]["minimum"] = 0
        return [limit, offset]
