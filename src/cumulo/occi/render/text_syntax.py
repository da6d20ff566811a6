"""The lexical layer of the OCCI text renderings (GFD.229 §4, RFC 7230 field values): quoting and
unquoting strings, splitting comma-joined field values and `;`-separated parameters outside quotes
and angle brackets, reading fields from a text/plain body or from request headers.

Input is hostile: every loop is bounded, and only `errors.Invalid` / `errors.PayloadTooLarge` leave
this module.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cumulo import errors
from cumulo.occi.render.base import HeaderList

MAX_BODY = 1 << 20  # bytes of a text/plain request body
MAX_FIELDS = 4096  # field values (after splitting comma lists) in one request
MAX_VALUE = 256 * 1024  # characters of one field value (user_data fits)

OCCI_FIELDS = ("category", "link", "x-occi-attribute", "x-occi-location")
TERM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
ATTR_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
# (no two adjacent runs of the same class: a long run of digits fails in linear time, never by backtracking)
NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z", re.ASCII)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "/": "/"}
_BAD_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def short(line: str, limit: int = 80) -> str:
    """A line quoted for an error message: bounded, control characters escaped."""
    s = line if len(line) <= limit else line[:limit] + "..."
    return repr(s)


# --- rendering ---------------------------------------------------------------------------------

def quote(value: str) -> str:
    """A quoted-string; \\ and " escaped, CR/LF/TAB and other controls as \\n \\r \\t \\uXXXX so a
    rendered value never breaks a line or a header."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f" or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def render_value(value: Any) -> str:
    """An attribute value: strings quoted, numbers and booleans bare (GFD.229 §4.3); lists and
    objects as a quoted JSON text; non-finite floats quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else quote(repr(value))
    if isinstance(value, str):
        return quote(value)
    import json  # noqa: PLC0415 - rare path

    return quote(json.dumps(value, separators=(",", ":"), default=str))


# --- parsing -----------------------------------------------------------------------------------

def unquote(text: str, line: str) -> str:
    """The content of a quoted-string `text` (which starts and ends with ")."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise errors.Invalid(f"malformed quoted string in {short(line)}")
    out: list[str] = []
    i, n = 1, len(text) - 1
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                raise errors.Invalid(f"dangling escape in {short(line)}")
            nxt = text[i + 1]
            if nxt == "u":
                hexits = text[i + 2 : i + 6]
                if len(hexits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in hexits):
                    raise errors.Invalid(f"malformed \\u escape in {short(line)}")
                cp = int(hexits, 16)
                i += 6
                if 0xD800 <= cp <= 0xDBFF and text[i : i + 2] == "\\u":
                    low = text[i + 2 : i + 6]
                    if len(low) == 4 and all(c in "0123456789abcdefABCDEF" for c in low) and 0xDC00 <= int(low, 16) <= 0xDFFF:
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                        i += 6
                if 0xD800 <= cp <= 0xDFFF:
                    raise errors.Invalid(f"lone surrogate escape in {short(line)}")
                out.append(chr(cp))
                continue
            out.append(_ESCAPES.get(nxt, nxt))  # RFC 7230 quoted-pair: \x is x
            i += 2
            continue
        if ch == '"':
            raise errors.Invalid(f"unescaped quote inside a quoted string in {short(line)}")
        out.append(ch)
        i += 1
    value = "".join(out)
    if _BAD_CHARS_RE.search(value):
        raise errors.Invalid(f"control character in a value in {short(line)}")
    return value


def split_outside(text: str, sep: str, line: str) -> list[str]:
    """`text` split at `sep` where it is outside a quoted string and outside <...>."""
    parts: list[str] = []
    cur: list[str] = []
    in_quote = in_angle = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
            cur.append(ch)
        elif in_angle:
            cur.append(ch)
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
            cur.append(ch)
        elif ch == sep:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if in_quote:
        raise errors.Invalid(f"unterminated quoted string in {short(line)}")
    if in_angle:
        raise errors.Invalid(f"unterminated <...> in {short(line)}")
    parts.append("".join(cur).strip())
    return parts


def parse_scalar(raw: str, line: str) -> Any:
    """An attribute value: quoted string, number (int or float), true/false; a bare token (1.1
    clients send enum values unquoted) is a string."""
    raw = raw.strip()
    if raw.startswith('"'):
        return unquote(raw, line)
    if raw in ("true", "false"):
        return raw == "true"
    if NUMBER_RE.match(raw):
        try:
            if re.fullmatch(r"[+-]?\d+", raw, re.ASCII):
                if len(raw) > 40:
                    raise errors.Invalid(f"number too large in {short(line)}")
                return int(raw)
            f = float(raw)
        except ValueError as e:
            raise errors.Invalid(f"malformed number in {short(line)}") from e
        if not math.isfinite(f):
            raise errors.Invalid(f"number out of range in {short(line)}")
        return f
    if raw and re.fullmatch(r"[A-Za-z0-9_.:/#@+~\-]+", raw):
        return raw
    raise errors.Invalid(f"malformed attribute value in {short(line)}")


def parse_params(parts: list[str], line: str) -> dict[str, str]:
    """`key=value` parameters (value a token or a quoted string), keys lower-cased; a repeated key is
    an error."""
    out: dict[str, str] = {}
    for p in parts:
        if not p:
            continue  # a trailing ";" (the GFD.229 examples end the Category so)
        if len(p) > 2 and p[0] == p[-1] == '"' and "=" in p and p.count('"') == 2:
            p = p[1:-1]  # '"class=kind"', as one GFD.185 example writes it
        key, sep, value = p.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if not sep or not key or not value:
            raise errors.Invalid(f"malformed parameter {short(p, 40)} in {short(line)}")
        if key in out:
            raise errors.Invalid(f"parameter {key!r} given twice in {short(line)}")
        out[key] = unquote(value, line) if value.startswith('"') else value
    return out


def _decode(raw: bytes | str, what: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise errors.Invalid(f"{what} is not valid UTF-8") from e


def body_text(body: bytes, rendering: str) -> str:
    """A request body as text: at most MAX_BODY bytes (413), UTF-8 (400), a leading BOM dropped."""
    if len(body) > MAX_BODY:
        raise errors.PayloadTooLarge(f"{rendering} body larger than {MAX_BODY} bytes")
    text = _decode(body, "the body")
    return text[1:] if text.startswith("\ufeff") else text


def fields_from_body(body: bytes) -> list[tuple[str, str]]:
    """(lower-cased name, value) for each OCCI field of a text/plain body; each comma-list item is
    its own field. Empty lines are skipped; a line that is not `Name: value` is an error; other
    field names are ignored (a client may echo e.g. Content-Type lines)."""
    text = body_text(body, "text")
    folded: list[list[str]] = []  # each line with its continuations, joined once (linear in the body)
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        if line[0] in " \t" and folded:  # obs-fold: a continuation of the previous line
            folded[-1].append(line.strip())
            continue
        folded.append([line])
    out: list[tuple[str, str]] = []
    for parts in folded:
        line = " ".join(parts)
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or not re.fullmatch(r"[A-Za-z0-9\-]+", name):
            raise errors.Invalid(f"malformed line {short(line)}: expected 'Name: value'")
        if name in OCCI_FIELDS:
            _add_items(out, name, value, line)
    return out


def fields_from_headers(headers: HeaderList) -> list[tuple[str, str]]:
    """(lower-cased name, value) for each OCCI field in request headers (repeated or comma-joined)."""
    out: list[tuple[str, str]] = []
    count = 0
    for raw_name, raw_value in headers:
        count += 1
        if count > MAX_FIELDS:
            raise errors.Invalid("too many header fields")
        name = _decode(raw_name, "a header name").strip().lower()
        if name not in OCCI_FIELDS:
            continue
        value = _decode(raw_value, f"header {name}")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise errors.Invalid(f"line break or NUL in header {name}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise errors.Invalid(f"header {name} holds a lone surrogate") from e
        _add_items(out, name, value, f"{name}: {value}")
    return out


def _add_items(out: list[tuple[str, str]], name: str, value: str, line: str) -> None:
    if len(value) > MAX_VALUE:
        raise errors.Invalid(f"{name} value longer than {MAX_VALUE} characters")
    for item in split_outside(value, ",", line):
        if not item:
            continue
        if len(out) >= MAX_FIELDS:
            raise errors.Invalid(f"more than {MAX_FIELDS} OCCI fields")
        out.append((name, item))
