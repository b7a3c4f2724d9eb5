"""Sticky, monotonic canary cohorts: which customers' reads go to the new backend at a given weight.

The hash is nginx's MurmurHash2 and the threshold is the one nginx's `split_clients` computes, so an
exported nginx configuration puts every customer on the same side as this proxy. A customer is on the
new side when hash(key) < weight% of 2^32-1: raising the weight only adds customers, never moves one
back (10% -> 20% keeps the first 10% where they were).
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_CACHE_LIMIT = 100_000
# Keys are whatever clients send as credentials (a JWT is a kilobyte, an invented value can be more):
# the cache is bounded by the bytes of its keys too, not only by their number.
_CACHE_MAX_BYTES = 16 * 1024 * 1024
_cache: dict[bytes, int] = {}
_cached_bytes = 0


def murmur2(data: bytes) -> int:
    """ngx_murmur_hash2: MurmurHash2, seed 0, little-endian 4-byte blocks."""
    length = len(data)
    h = length & _MASK
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def cohort_hash(key: bytes) -> int:
    """murmur2 with a bounded cache: customer keys repeat, and Python hashing costs microseconds."""
    global _cached_bytes
    value = _cache.get(key)
    if value is None:
        if len(_cache) >= _CACHE_LIMIT or _cached_bytes >= _CACHE_MAX_BYTES:
            _cache.clear()
            _cached_bytes = 0
        _cached_bytes += len(key)
        value = _cache[key] = murmur2(key)
    return value


def weight_threshold(weight_percent: float) -> int:
    """nginx split_clients: percent in hundredths, times 0xffffffff / 10000 (integer arithmetic)."""
    hundredths = round(weight_percent * 100)
    return hundredths * 0xFFFFFFFF // 10000


def in_canary(key: bytes, threshold: int) -> bool:
    return cohort_hash(key) < threshold
