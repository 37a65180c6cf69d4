"""Root URL matching and the gobwas-style glob translation."""

from __future__ import annotations

import pytest

from plugin_operator.signatures.rooturl import RootUrlError, glob_regex, url_match


@pytest.mark.parametrize(("spec", "app", "matches"), [
    ("http://localhost:3000", "http://localhost:3000/", True),
    ("http://localhost:3000/grafana/", "http://localhost:3000/grafana", True),
    ("http://localhost:3000/grafana", "http://localhost:3000/", False),
    ("HTTP://localhost:3000/", "http://localhost:3000/", True),
    ("http://localhost:3000/", "http://LOCALHOST:3000/", False),  # Go compares hosts as-is
    ("http://localhost:3000/a/../b", "http://localhost:3000/b/", True),
])
def test_exact_matching(spec: str, app: str, matches: bool) -> None:
    assert url_match([spec], app, "private") is matches


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("a*c", "abbbc", True), ("a*c", "ab.c", False), ("a*c", "ab/c", False),
    ("a**c", "ab/.c", True), ("a?c", "abc", True), ("a?c", "a.c", False),
    ("[ab]x", "bx", True), ("[!ab]x", "cx", True), ("[!ab]x", "ax", False),
    ("[a-c]x", "bx", True), ("{foo,bar}.z", "bar.z", True), ("{foo,bar}.z", "baz.z", False),
    ("a\\*c", "a*c", True), ("a\\*c", "abc", False),
])
def test_glob(pattern: str, text: str, matches: bool) -> None:
    assert (glob_regex(pattern).fullmatch(text) is not None) is matches


@pytest.mark.parametrize("pattern", ["[abc", "{a,b", "abc\\"])
def test_bad_glob_is_an_error(pattern: str) -> None:
    with pytest.raises(RootUrlError):
        glob_regex(pattern)


def test_malformed_root_url_is_an_error() -> None:
    with pytest.raises(RootUrlError):
        url_match(["http://[::1"], "http://localhost:3000/", "private")
