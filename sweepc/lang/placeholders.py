"""``shell:`` and ``restart:`` templates: parsing placeholders.

``{name}`` or ``{name.attr}`` is a placeholder, ``{{`` and ``}}`` are literal
braces. What a placeholder means is decided by the compiler; this module only
finds them and says exactly where a malformed one is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INNER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*")


@dataclass(frozen=True, slots=True)
class Placeholder:
    root: str
    attr: str | None
    offset: int  # index of the '{' in the template text
    text: str  # the placeholder as written, braces included


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))


@dataclass(frozen=True, slots=True)
class TemplateError(Exception):
    message: str
    offset: int
    length: int
    hint: str


_BRACES_HINT = "write {{ and }} for literal braces, e.g. ${{HOME}} or awk '{{print $1}}'"


def parse_template(text: str) -> Template:
    parts: list[str | Placeholder] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if text.startswith("{{", i):
                buf.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            nxt = text.find("{", i + 1)
            if end < 0 or (0 <= nxt < end):
                raise TemplateError("unclosed '{' in command", i, 1, _BRACES_HINT)
            inner = text[i + 1 : end]
            m = _INNER.fullmatch(inner)
            if not m:
                if re.match(r"\s*[A-Za-z_][A-Za-z0-9_.]*\s*[:!]", inner):
                    hint = "format specifications are not supported; format the value in your script"
                else:
                    hint = "a placeholder is {name} or {name.attr}; " + _BRACES_HINT
                raise TemplateError(f"malformed placeholder '{{{inner}}}'", i, end - i + 1, hint)
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Placeholder(m.group(1), m.group(2), i, text[i : end + 1]))
            i = end + 1
        elif c == "}":
            if text.startswith("}}", i):
                buf.append("}")
                i += 2
                continue
            raise TemplateError("single '}' in command", i, 1, _BRACES_HINT)
        else:
            buf.append(c)
            i += 1
    if buf:
        parts.append("".join(buf))
    return Template(text, tuple(parts))
