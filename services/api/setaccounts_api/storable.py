"""What the store can hold, checked once on the parsed request body, before anything touches the store.

JSON accepts values that BSON cannot encode: a NUL byte in a key, a lone UTF-16 surrogate (`"\\ud800"`), an
integer outside signed 64 bits, and documents over MongoDB's 16 MiB limit (BSON can be larger than the JSON
it came from: array indexes become keys). One walk over the parsed body finds them all and estimates the
encoded size of every resource in it, so a bad body is a fast 400 (413 for the size) instead of a driver
error deep in a write.
"""

from __future__ import annotations

from typing import Any

# MongoDB's maxBsonObjectSize; a stored document wraps the resource with server fields (ids, version,
# compartments listed twice more), so a resource must leave room for them.
BSON_MAX_BYTES = 16 * 1024 * 1024
STORED_OVERHEAD_BYTES = 64 * 1024
MAX_RESOURCE_BYTES = BSON_MAX_BYTES - STORED_OVERHEAD_BYTES
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Bundles the server processes entry by entry; they are never stored as one document.
PROCESSED_BUNDLE_TYPES = frozenset({"transaction", "batch"})
_PATH_PART_CHARS = 40


class Unstorable(Exception):
    """Why the body cannot be stored: `reason` is a fixed phrase (safe to log), `where` a JSON path from the
    body (for the client only: it may carry the client's data)."""

    def __init__(self, status: int, reason: str, where: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.where = where


def check_storable(value: Any, max_resource_bytes: int = MAX_RESOURCE_BYTES) -> None:
    """Raise Unstorable for the first value BSON cannot encode, or a resource estimated over the limit.

    A resource is any JSON object with a `resourceType`; a top-level transaction or batch Bundle is not one
    (only its entries are stored).
    """
    top_is_processed = (
        isinstance(value, dict)
        and value.get("resourceType") == "Bundle"
        and value.get("type") in PROCESSED_BUNDLE_TYPES
    )
    walker = _Walker(max_resource_bytes, skip=value if top_is_processed else None)
    try:
        walker.size(value, ())
    except RecursionError:
        raise Unstorable(400, "nested too deeply", "$") from None


class _Walker:
    def __init__(self, limit: int, skip: Any) -> None:
        self.limit = limit
        self.skip = skip

    def size(self, value: Any, path: tuple[str | int, ...]) -> int:
        """The BSON size of `value` as an element's value (without its type byte and key)."""
        if isinstance(value, str):
            return 5 + self.text_bytes(value, path, "a string")
        if isinstance(value, bool) or value is None:
            return 1 if isinstance(value, bool) else 0
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise Unstorable(400, "integer outside signed 64 bits", _render(path))
            return 4 if INT32_MIN <= value <= INT32_MAX else 8
        if isinstance(value, float):
            return 8
        if isinstance(value, dict):
            total = 5
            for key, item in value.items():
                if "\x00" in key:
                    raise Unstorable(400, "NUL character in a key", _render((*path, key)))
                here = (*path, key)
                total += 2 + self.text_bytes(key, here, "a key") + self.size(item, here)
            if total > self.limit and value is not self.skip and "resourceType" in value:
                raise Unstorable(413, "resource over the document size limit", _render(path))
            return total
        if isinstance(value, list):
            total = 5
            for index, item in enumerate(value):
                total += 2 + len(str(index)) + self.size(item, (*path, index))
            return total
        raise Unstorable(400, f"unsupported JSON value {type(value).__name__}", _render(path))

    @staticmethod
    def text_bytes(text: str, path: tuple[str | int, ...], what: str) -> int:
        if text.isascii():
            return len(text)
        try:
            return len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise Unstorable(400, f"lone surrogate in {what}", _render(path)) from None


def _render(path: tuple[str | int, ...]) -> str:
    """`$.note[3].text`, each key cut short: the path goes into a diagnostic, never a log line."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part.encode("unicode_escape").decode("ascii")
            if len(shown) > _PATH_PART_CHARS:
                shown = shown[:_PATH_PART_CHARS] + "…"
            out += f".{shown}"
    return out
