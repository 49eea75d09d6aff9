"""``$(VAR)`` references in env values, command and args, expanded as the kubelet does.

The rules of Kubernetes' ``third_party/forked/golang/expansion``: ``$(NAME)`` becomes the
variable's value when it is defined, and stays as written when it is not; ``$$`` is an
escaped ``$``; any other ``$`` (including an unterminated ``$(``) is kept as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """``text`` with every reference replaced through ``lookup`` (None: undefined)."""
    out: list[str] = []
    cursor = 0
    while cursor < len(text):
        char = text[cursor]
        if char != "$" or cursor + 1 == len(text):
            out.append(char)
            cursor += 1
            continue
        after = text[cursor + 1]
        if after == "$":
            out.append("$")
            cursor += 2
        elif after == "(":
            end = text.find(")", cursor + 2)
            if end < 0:
                out.append("$(")
                cursor += 2
                continue
            name = text[cursor + 2 : end]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            cursor = end + 1
        else:
            out.append("$" + after)
            cursor += 2
    return "".join(out)


def expand_with(text: str, *scopes: Mapping[str, str]) -> str:
    """``expand`` looking names up in ``scopes``, the first that defines a name wins."""

    def lookup(name: str) -> str | None:
        for scope in scopes:
            if name in scope:
                return scope[name]
        return None

    return expand(text, lookup)
