"""Does a manifest's ``rootUrls`` allow the app URL? Grafana's rule, in Python.

Each spec matches when scheme, host (with port) and the cleaned request URI equal the app
URL's (so a trailing slash does not matter). For ``private-glob`` signatures a spec also
matches as a glob over the raw app URL, where ``*`` stops at ``/`` and ``.``, ``**`` does
not, and ``?``, ``[...]``, ``[!...]`` and ``{a,b}`` work as in gobwas/glob.
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

_SEPARATORS = "/."


class RootUrlError(ValueError):
    """A root URL or glob cannot be parsed."""


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise RootUrlError(f"{url!r} is not a URL: {exc}") from None
    return parts


def _clean_request_uri(parts: SplitResult) -> str:
    request_uri = parts.path or "/"
    if parts.query:
        request_uri += "?" + parts.query
    cleaned = posixpath.normpath(request_uri)
    # Go's path.Clean reduces a leading "//" to "/"; posixpath keeps it.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def url_match(specs: tuple[str, ...] | list[str], app_url: str, signature_type: str) -> bool:
    target = _split(app_url)
    for spec in specs:
        parts = _split(spec)
        if (parts.scheme.lower() == target.scheme.lower() and parts.netloc == target.netloc
                and _clean_request_uri(parts) == _clean_request_uri(target)):
            return True
        if signature_type == "private-glob" and glob_regex(spec).fullmatch(app_url):
            return True
    return False


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a gobwas/glob pattern (separators ``/`` and ``.``) to a regex."""
    not_sep = f"[^{re.escape(_SEPARATORS)}]"
    out: list[str] = []
    index = 0
    depth = 0  # inside {a,b}
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 1
            if index >= len(pattern):
                raise RootUrlError(f"glob {pattern!r} ends with an escape character")
            out.append(re.escape(pattern[index]))
        elif char == "*":
            if pattern.startswith("**", index):
                out.append(".*")
                index += 1
            else:
                out.append(f"{not_sep}*")
        elif char == "?":
            out.append(not_sep)
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                raise RootUrlError(f"glob {pattern!r} has an unclosed [")
            body = pattern[index + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise RootUrlError(f"glob {pattern!r} has an empty [] class")
            escaped = "".join("-" if c == "-" else re.escape(c) for c in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            index = end
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(char))
        index += 1
    if depth:
        raise RootUrlError(f"glob {pattern!r} has an unclosed {{")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise RootUrlError(f"glob {pattern!r} is not valid: {exc}") from None
