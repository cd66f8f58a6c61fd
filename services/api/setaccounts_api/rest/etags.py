"""Versions on the wire: the weak ETag of a stored version, and the version an `If-Match` names."""

from __future__ import annotations

import re

_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,18})"?')


def etag(version: int) -> str:
    """The weak ETag of a stored version: FHIR versions are content versions, not byte-exact ones."""
    return f'W/"{version}"'


def version_of_etag(value: str) -> int | None:
    """The version in `W/"3"`, `"3"` or `3` (as If-Match or Bundle.entry.request.ifMatch), else None."""
    match = _ETAG.fullmatch(value.strip())
    return int(match.group(1)) if match else None
