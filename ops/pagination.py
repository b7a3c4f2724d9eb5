"""The list pagination every API uses: ?limit=&offset= with a bounded page size."""

from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    # Without a bound, ?limit=10**20 reached PostgreSQL as LIMIT and overflowed bigint (a 500);
    # a bound also keeps one request from reading a whole table.
    max_limit = 500
