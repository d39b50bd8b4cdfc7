"""A reader for the YAML the Azure ML files use, without PyYAML.

It reads one document of block mappings and sequences, flow ``[...]`` and
``{...}`` collections, plain, single- and double-quoted scalars, ``|`` and
``>`` block scalars (with chomping and indentation indicators), comments
and a leading ``---``. What it does not read it refuses, with the file and
the line: anchors and aliases, tags (but ``!!str``), explicit ``?`` keys,
directives, and a second document.

Scalars get the types the CLI gives them (``outpost ml job create`` reads
files with the same rules), so that the SDK sends what the CLI sends:
YAML 1.2 core types, plus ``yes``/``no``/``on``/``off`` as booleans as
PyYAML (which ``az`` uses) reads them; numbers keep the text they were
written with when it is valid JSON (``1.0`` stays ``1.0`` in a command);
timestamps stay strings; ``.inf`` and ``.nan`` are refused (JSON has no such
numbers). Keys must be strings, each once per mapping.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from typing import Any, Dict, List, Optional, Tuple

from .exceptions import YAMLError

__all__ = ["Document", "load", "load_file", "load_document", "YAMLError"]


class _Int(int):
    """An int whose JSON text is not ``str(value)`` (``-0``)."""

    json_text: str


class _Float(float):
    """A float whose JSON text is the one it was written with (``1e3``, ``0.10``)."""

    json_text: str


Path = Tuple[Any, ...]


class Document:
    """A YAML file's value with the line of every field, for messages."""

    def __init__(self, file: str, value: Any, lines: Dict[Path, int]) -> None:
        self.file = file
        self.value = value
        self._lines = lines

    def line(self, field: str) -> int:
        """The line of a dotted field path (``inputs.data.path``, ``a.list[0].b``); 0 if unknown."""
        path = _parse_field_path(field)
        if path is None:
            return 0
        return self._lines.get(path, 0)


_FIELD_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_field_path(field: str) -> Optional[Path]:
    out: List[Any] = []
    pos = 0
    while pos < len(field):
        if field[pos] == "." and out:
            pos += 1
        m = _FIELD_SEGMENT.match(field, pos)
        if not m:
            return None
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(out)


def load(text: str, file: str = "<string>") -> Any:
    """The value of a YAML document given as text (``None`` for an empty one)."""
    return load_document_text(text, file).value


def load_file(path: str) -> Any:
    """The value of a YAML file (``None`` for an empty one)."""
    return load_document(path).value


def load_document(path: str) -> Document:
    """A YAML file's value and the lines of its fields."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise YAMLError(str(path), line, "the file is not UTF-8 text") from None
    return load_document_text(text, str(path))


def load_document_text(text: str, file: str = "<string>") -> Document:
    """A document given as text, and the lines of its fields."""
    p = _Parser(text, file)
    value = p.document()
    return Document(file, value, p.field_lines)


# Types, as the CLI reads plain scalars.
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
          # PyYAML's booleans beyond true and false (YAML 1.1), which az reads as such.
          "yes": True, "Yes": True, "YES": True, "on": True, "On": True, "ON": True,
          "no": False, "No": False, "NO": False, "off": False, "Off": False, "OFF": False}
_NOT_JSON_FLOATS = {".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"}
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
# Integers as Go's strconv.ParseInt reads them with base 0 (the CLI's YAML
# library does): 0x, 0o, 0b prefixes, and a leading 0 for octal.
_GO_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")


def _go_int(text: str) -> Optional[int]:
    m = _GO_INT.fullmatch(text)
    if not m:
        return None
    sign, body = m.group(1), m.group(2)
    if body[:2] in ("0x", "0X"):
        v = int(body[2:], 16)
    elif body[:2] in ("0o", "0O"):
        v = int(body[2:], 8)
    elif body[:2] in ("0b", "0B"):
        v = int(body[2:], 2)
    elif len(body) > 1 and body[0] == "0":
        v = int(body[1:], 8)
    else:
        v = int(body)
    if sign == "-":
        v = -v
    if -(1 << 63) <= v < (1 << 63):
        return v
    # An unsigned 64-bit number is taken without a sign only.
    if sign == "" and 0 <= v < (1 << 64):
        return v
    return None


def _finite_float(text: str) -> Optional[float]:
    try:
        f = float(text)
    except ValueError:
        return None
    # Out of range is no number for the CLI's library: the text stays a string.
    return None if math.isinf(f) or math.isnan(f) else f


def _go_format_float(f: float) -> str:
    """f as Go's strconv.FormatFloat(f, 'g', -1, 64) writes it, as the CLI does."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = decimal.Decimal(repr(f)).as_tuple()
    ds = "".join(str(d) for d in digits).rstrip("0") or "0"
    # Decimal point position: the value is 0.<ds> x 10^dp.
    dp = len(digits) + int(exp)
    x = dp - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        # Go's shortest form switches to %e from an exponent of 6.
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return f"{neg}{ds}{'0' * (dp - len(ds))}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def _number(text: str, value: Any) -> Any:
    """value with the JSON text the CLI writes for the scalar text."""
    if _JSON_NUMBER.fullmatch(text):
        json_text = text
    elif isinstance(value, int):
        json_text = str(value)
    else:
        json_text = _go_format_float(value)
    if isinstance(value, int):
        if json_text == str(value):
            return value
        n = _Int(value)
        n.json_text = json_text
        return n
    if json_text == repr(value):
        return value
    fl = _Float(value)
    fl.json_text = json_text
    return fl


class _Scalar:
    """A scalar as written: its text, whether it was plain, and its line."""

    __slots__ = ("text", "plain", "line")

    def __init__(self, text: str, plain: bool, line: int) -> None:
        self.text = text
        self.plain = plain
        self.line = line


class _Parser:
    def __init__(self, text: str, file: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.file = file
        self.lines = text.split("\n")
        # A final line break leaves an empty last "line" that is not one.
        if len(self.lines) > 1 and self.lines[-1] == "":
            self.lines.pop()
            self.last_has_break = True
        else:
            self.last_has_break = False
        self.li = 0
        self.col = 0
        self.field_lines: Dict[Path, int] = {}

    # --- errors and positions -------------------------------------------------

    def error(self, problem: str, line: Optional[int] = None) -> YAMLError:
        if line is None:
            line = min(self.li, max(len(self.lines) - 1, 0)) + 1
        return YAMLError(self.file, line, problem)

    def line_text(self) -> str:
        return self.lines[self.li] if self.li < len(self.lines) else ""

    def peek(self, offset: int = 0) -> str:
        line = self.line_text()
        i = self.col + offset
        return line[i] if 0 <= i < len(line) else ""

    def at_eof(self) -> bool:
        return self.li >= len(self.lines)

    def has_break(self, li: int) -> bool:
        return li < len(self.lines) - 1 or self.last_has_break

    def blank_after(self, i: int) -> bool:
        """Whether the character at i of the current line is followed by a space or the line's end."""
        line = self.line_text()
        return i + 1 >= len(line) or line[i + 1] in " \t"

    def at_marker(self) -> bool:
        """A document marker (--- or ...) at the start of the current line."""
        if self.col != 0 or self.at_eof():
            return False
        line = self.lines[self.li]
        return line[:3] in ("---", "...") and (len(line) == 3 or line[3] in " \t")

    def skip_to_token(self) -> bool:
        """Moves past spaces, comments and line ends to the next token; False at the end."""
        while self.li < len(self.lines):
            line = self.lines[self.li]
            start = self.col
            c = start
            while c < len(line) and line[c] in " \t":
                c += 1
            if c < len(line) and line[c] != "#":
                if start == 0 and "\t" in line[:c]:
                    raise self.error("a tab in the indentation: YAML indents with spaces")
                self.col = c
                return True
            self.li += 1
            self.col = 0
        return False

    def skip_spaces(self) -> None:
        line = self.line_text()
        while self.col < len(line) and line[self.col] in " \t":
            self.col += 1

    def end_of_line(self, what: str) -> None:
        """Only spaces and a comment may follow on the line."""
        self.skip_spaces()
        c = self.peek()
        if c and c != "#":
            raise self.error(f"unexpected {c!r} after {what}")
        self.li += 1
        self.col = 0

    # --- the document ---------------------------------------------------------

    def document(self) -> Any:
        if not self.skip_to_token():
            return None
        if self.peek() == "%":
            raise self.error("directives (%YAML, %TAG) are not supported")
        if self.at_marker() and self.lines[self.li].startswith("---"):
            self.col = 3
            self.skip_spaces()
            if not self.peek() or self.peek() == "#":
                self.li += 1
                self.col = 0
        if not self.skip_to_token() or self.at_marker():
            value = None
        else:
            value = self.block_node(-1, ())
        if not self.skip_to_token():
            return value
        if self.at_marker():
            if self.lines[self.li].startswith("..."):
                self.li += 1
                self.col = 0
                if not self.skip_to_token():
                    return value
            raise self.error("a second YAML document (---): the file must hold one")
        raise self.error("unexpected content after the document (check the indentation of this line)")

    # --- block nodes ----------------------------------------------------------

    def refuse_special(self) -> None:
        c = self.peek()
        if c == "&":
            raise self.error("anchors (&name) are not supported: write the value out")
        if c == "*":
            raise self.error("aliases (*name) are not supported: write the value out")
        if c == "?" and self.blank_after(self.col):
            raise self.error("explicit keys (? key) are not supported")
        if c in ",]}%@`":
            raise self.error(f"a value cannot start with {c!r}: quote it")

    def tag(self) -> bool:
        """Reads a tag; True for !!str (the value that follows is text)."""
        line = self.line_text()
        end = self.col
        while end < len(line) and line[end] not in " \t":
            end += 1
        tag = line[self.col:end]
        if tag not in ("!!str", "!<tag:yaml.org,2002:str>"):
            raise self.error(f"tags ({tag}) are not supported: only !!str, or write the value plainly")
        self.col = end
        self.skip_spaces()
        if not self.peek() or self.peek() == "#":
            raise self.error("!!str must be followed by its text on the same line")
        if self.peek() in "[{|>&*!" or (self.peek() == "-" and self.blank_after(self.col)):
            raise self.error("!!str must be followed by a scalar")
        return True

    def block_node(self, parent: int, path: Path) -> Any:
        """The node at the current token, whose column must be beyond parent."""
        if self.at_eof() or self.at_marker() or self.col <= parent:
            return None
        indent = self.col
        c = self.peek()
        self.refuse_special()
        if c == "-" and self.blank_after(self.col):
            return self.block_sequence(indent, path)
        if c == "!":
            self.tag()
            return self.inline_scalar(parent, forced_str=True)
        if c in "|>":
            return self.block_scalar(parent)
        if c in "[{":
            line = self.li
            v = self.flow_node(path)
            self.skip_spaces()
            if self.peek() == ":" and self.li == line:
                raise self.error("collections as keys are not supported")
            self.end_of_line("a flow collection")
            return v
        if self.key_ahead():
            return self.block_mapping(indent, path)
        return self.inline_scalar(parent)

    def key_ahead(self) -> bool:
        """Whether the token at the cursor is a mapping key (a scalar then ': ')."""
        line = self.line_text()
        i = self.col
        c = line[i] if i < len(line) else ""
        if c in "\"'":
            j = i + 1
            while j < len(line):
                if line[j] == c:
                    if c == "'" and j + 1 < len(line) and line[j + 1] == "'":
                        j += 2
                        continue
                    break
                if c == '"' and line[j] == "\\":
                    j += 1
                j += 1
            else:
                return False  # a quoted scalar over several lines is no key
            j += 1
            while j < len(line) and line[j] in " \t":
                j += 1
            return j < len(line) and line[j] == ":" and (j + 1 >= len(line) or line[j + 1] in " \t")
        return self.plain_key_end(line, i) is not None

    @staticmethod
    def plain_key_end(line: str, i: int) -> Optional[int]:
        """Where ': ' ends a plain key starting at i on line, if it does before a comment."""
        j = i
        while j < len(line):
            ch = line[j]
            if ch == ":" and (j + 1 >= len(line) or line[j + 1] in " \t"):
                return j
            if ch == "#" and j > i and line[j - 1] in " \t":
                return None
            j += 1
        return None

    def block_mapping(self, indent: int, path: Path) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        first_lines: Dict[str, int] = {}
        while True:
            if not self.skip_to_token() or self.at_marker() or self.col < indent:
                return result
            if self.col > indent:
                raise self.error("bad indentation of a mapping entry (deeper than the keys above it)")
            if self.peek() == "-" and self.blank_after(self.col):
                raise self.error("a list item where a key of the mapping above was expected (check the indentation)")
            self.refuse_special()
            if self.peek() == "!":
                raise self.error("tags on keys are not supported")
            line = self.li + 1
            if not self.key_ahead():
                raise self.error("expected a key (name: value) in this mapping")
            key = self.key_scalar()
            self.skip_spaces()
            # key_ahead found the ':' already.
            self.col += 1
            if key in first_lines:
                raise self.error(f"duplicate key {json.dumps(key)} (first at line {first_lines[key]})", line)
            first_lines[key] = line
            sub = path + (key,)
            self.field_lines[sub] = line
            result[key] = self.mapping_value(indent, sub)

    def key_scalar(self) -> str:
        c = self.peek()
        line = self.li + 1
        if c == '"':
            return self.double_quoted()
        if c == "'":
            return self.single_quoted()
        text_line = self.line_text()
        end = self.plain_key_end(text_line, self.col)
        if end is None:  # key_ahead found the ': ' before this is called
            raise self.error("expected a key (name: value) in this mapping")
        text = text_line[self.col:end].rstrip(" \t")
        self.col = end
        return self.key_text(_Scalar(text, True, line))

    def key_text(self, s: _Scalar) -> str:
        # yes, no, on and off are booleans as values only: as keys the CLI
        # reads them as text, as YAML 1.2 does.
        if not s.plain or s.text in _BOOLS and s.text.lower() not in ("true", "false"):
            return s.text
        v = self.resolve(s)
        if isinstance(v, str):
            return v
        shown = s.text if s.text else "(empty)"
        raise self.error(f'key {shown} is not a string: field names are text (quote it: "{s.text}")', s.line)

    def mapping_value(self, indent: int, path: Path) -> Any:
        """The value after a key's ':' (the cursor is just past it)."""
        self.skip_spaces()
        c = self.peek()
        if not c or c == "#":
            if not self.skip_to_token() or self.at_marker():
                return None
            if self.col == indent and self.peek() == "-" and self.blank_after(self.col):
                # A list may sit at its key's own indentation.
                return self.block_sequence(indent, path)
            return self.block_node(indent, path)
        self.refuse_special()
        if c == "-" and self.blank_after(self.col):
            raise self.error("a list cannot start on its key's line: put '- item' on the next lines")
        if c == "!":
            self.tag()
            return self.inline_scalar(indent, forced_str=True)
        if c in "|>":
            return self.block_scalar(indent)
        if c in "[{":
            v = self.flow_node(path)
            self.end_of_line("a flow collection")
            return v
        if self.key_ahead():
            raise self.error("a mapping cannot start on its key's line (name: key: value): put it on the next lines, indented")
        return self.inline_scalar(indent)

    def block_sequence(self, indent: int, path: Path) -> List[Any]:
        items: List[Any] = []
        while True:
            if not self.skip_to_token() or self.at_marker() or self.col < indent:
                return items
            if self.col > indent:
                raise self.error("bad indentation of a list item (deeper than the items above it)")
            if not (self.peek() == "-" and self.blank_after(self.col)):
                return items
            sub = path + (len(items),)
            self.field_lines[sub] = self.li + 1
            self.col += 1
            self.skip_spaces()
            if not self.peek() or self.peek() == "#":
                if not self.skip_to_token() or self.at_marker():
                    items.append(None)
                    continue
                items.append(self.block_node(indent, sub))
                continue
            items.append(self.block_node(indent, sub))

    # --- scalars --------------------------------------------------------------

    def inline_scalar(self, parent: int, forced_str: bool = False) -> Any:
        """A quoted or plain scalar starting at the cursor, in block context."""
        c = self.peek()
        line = self.li + 1
        if c in "\"'":
            text = self.double_quoted() if c == '"' else self.single_quoted()
            self.skip_spaces()
            if self.peek() == ":" and self.blank_after(self.col):
                raise self.error("a mapping cannot start here (name: key: value): put it on the next lines, indented")
            self.end_of_line("a quoted string")
            return text
        s = self.plain_block(parent, line)
        if forced_str:
            return s.text
        return self.resolve(s)

    def plain_block(self, parent: int, line: int) -> _Scalar:
        """A plain scalar in block context, continued on lines deeper than parent."""
        text, ended = self.plain_line()
        parts = [text]
        if not ended:
            self.li += 1
            self.col = 0
            empty = 0
            while self.li < len(self.lines):
                raw = self.lines[self.li]
                stripped = raw.strip(" \t")
                if not stripped:
                    empty += 1
                    self.li += 1
                    continue
                ind = len(raw) - len(raw.lstrip(" "))
                if ind <= parent or stripped.startswith("#") or self.at_marker():
                    break
                self.col = len(raw) - len(raw.lstrip(" \t"))
                more, ended = self.plain_line()
                parts.append("\n" * empty if empty else " ")
                parts.append(more)
                empty = 0
                self.li += 1
                self.col = 0
                if ended:
                    break
            # The cursor is at the start of a line not taken.
        else:
            self.li += 1
            self.col = 0
        return _Scalar("".join(parts), True, line)

    def plain_line(self) -> Tuple[str, bool]:
        """The plain text from the cursor to the line's end or a comment; True when a comment ended it."""
        line = self.line_text()
        start = self.col
        j = start
        while j < len(line):
            ch = line[j]
            if ch == ":" and (j + 1 >= len(line) or line[j + 1] in " \t"):
                raise self.error("a mapping cannot start here (a ': ' inside a value): quote the value")
            if ch == "#" and j > start and line[j - 1] in " \t":
                self.col = j
                return line[start:j].rstrip(" \t"), True
            j += 1
        self.col = len(line)
        return line[start:].rstrip(" \t"), False

    def resolve(self, s: _Scalar) -> Any:
        if not s.plain:
            return s.text
        t = s.text
        if t in _NULLS:
            return None
        if t in _BOOLS:
            return _BOOLS[t]
        if t in _NOT_JSON_FLOATS:
            raise self.error(f"{t} is not a number JSON can hold; quote it for text", s.line)
        first = t[0]
        if first == ".":
            if _DOT_FLOAT.fullmatch(t):
                f = _finite_float(t)
                if f is not None:
                    return _number(t, f)
            return t
        if first in "+-0123456789":
            plain = t.replace("_", "")
            i = _go_int(plain)
            if i is not None:
                return _number(t, i)
            if _YAML_FLOAT.fullmatch(plain):
                f = _finite_float(plain)
                if f is not None:
                    if _JSON_NUMBER.fullmatch(t) and "." not in t and "e" not in t.lower():
                        # A whole number too big for 64 bits, written as such.
                        return int(t)
                    return _number(t, f)
        return t

    def single_quoted(self) -> str:
        start_line = self.li + 1
        self.col += 1
        out: List[str] = []
        while True:
            line = self.line_text()
            if self.at_eof():
                raise self.error("a quoted string that is never closed", start_line)
            j = self.col
            seg: List[str] = []
            while j < len(line):
                ch = line[j]
                if ch == "'":
                    if j + 1 < len(line) and line[j + 1] == "'":
                        seg.append("'")
                        j += 2
                        continue
                    out.append("".join(seg))
                    self.col = j + 1
                    return "".join(out)
                seg.append(ch)
                j += 1
            out.append("".join(seg).rstrip(" \t"))
            out.append(self.fold_quoted_break(start_line))

    def fold_quoted_break(self, start_line: int) -> str:
        """Moves past a line break inside quotes to the next text; the folded break."""
        empty = 0
        self.li += 1
        while self.li < len(self.lines):
            raw = self.lines[self.li]
            if raw[:3] in ("---", "...") and (len(raw) == 3 or raw[3] in " \t"):
                raise self.error("a document marker inside a quoted string", start_line)
            if raw.strip(" \t"):
                self.col = len(raw) - len(raw.lstrip(" \t"))
                return "\n" * empty if empty else " "
            empty += 1
            self.li += 1
        raise self.error("a quoted string that is never closed", start_line)

    _ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
                "r": "\r", "e": "\x1b", " ": " ", '"': '"', "'": "'", "\\": "\\", "N": "\x85",
                "_": "\xa0", "L": "\u2028", "P": "\u2029"}
    _HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

    def double_quoted(self) -> str:
        start_line = self.li + 1
        self.col += 1
        out: List[str] = []
        while True:
            if self.at_eof():
                raise self.error("a quoted string that is never closed", start_line)
            line = self.line_text()
            j = self.col
            pending = ""  # unescaped spaces, dropped at a line break
            escaped_break = False
            while j < len(line):
                ch = line[j]
                if ch == '"':
                    out.append(pending)
                    self.col = j + 1
                    return "".join(out)
                if ch in " \t":
                    pending += ch
                    j += 1
                    continue
                out.append(pending)
                pending = ""
                if ch != "\\":
                    out.append(ch)
                    j += 1
                    continue
                if j + 1 >= len(line):
                    escaped_break = True
                    j += 1
                    break
                e = line[j + 1]
                if e in self._ESCAPES:
                    out.append(self._ESCAPES[e])
                    j += 2
                elif e in self._HEX_ESCAPES:
                    n = self._HEX_ESCAPES[e]
                    digits = line[j + 2:j + 2 + n]
                    if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                        raise self.error(f"bad escape \\{e}{digits}: want {n} hexadecimal digits")
                    code = int(digits, 16)
                    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise self.error(f"bad escape \\{e}{digits}: not a character")
                    out.append(chr(code))
                    j += 2 + n
                else:
                    raise self.error(f"unknown escape \\{e} in a double-quoted string")
            folded = self.fold_quoted_break(start_line)
            if escaped_break:
                # An escaped line break joins the lines; only empty lines count.
                out.append(folded if folded != " " else "")
            else:
                out.append(folded)

    def block_scalar(self, parent: int) -> str:
        header_line = self.li + 1
        style = self.peek()
        self.col += 1
        chomp = ""
        explicit = 0
        while self.peek() and self.peek() not in " \t#":
            c = self.peek()
            if c in "+-" and not chomp:
                chomp = c
            elif c in "123456789" and not explicit:
                explicit = int(c)
            else:
                raise self.error(f"bad block scalar header: {c!r} after {style}: want {style} with an optional "
                                 "chomping (+ or -) and indentation (1-9) indicator")
            self.col += 1
        self.end_of_line("a block scalar header")
        if explicit:
            indent = max(parent, 0) + explicit
        else:
            # Leading empty lines, then the first line with text sets the indentation.
            max_indent = 0
            k = self.li
            while k < len(self.lines):
                raw = self.lines[k]
                spaces = len(raw) - len(raw.lstrip(" "))
                max_indent = max(max_indent, spaces)
                if raw[spaces:spaces + 1] == "\t" and raw.strip(" \t"):
                    raise self.error("a tab where the indentation of a block scalar was expected", k + 1)
                if raw.strip(" "):
                    break
                k += 1
            indent = max(max_indent, parent + 1, 1)
        # Lines of the scalar: empty ones, and those indented at least indent.
        content: List[Optional[str]] = []  # None: an empty line
        last_li = self.li - 1
        while self.li < len(self.lines):
            raw = self.lines[self.li]
            spaces = len(raw) - len(raw.lstrip(" "))
            if spaces >= indent:
                content.append(raw[indent:])
            elif raw.strip(" \t") == "":
                content.append(None)
            else:
                break
            last_li = self.li
            self.li += 1
        self.col = 0
        # Trailing empty lines are breaks, not text.
        trailing = 0
        while content and content[-1] is None:
            content.pop()
            trailing += 1
        text_lines = content
        if not text_lines:
            if chomp == "+":
                return "\n" * trailing
            return ""
        # Whether the last line with text ended with a break.
        last_text_li = last_li - trailing
        ends_with_break = self.has_break(last_text_li)
        out: List[str] = []
        leading = 0
        prev: Optional[str] = None
        for ln in text_lines:
            if ln is None:
                leading += 1
                continue
            if prev is not None:
                if style == ">" and prev[:1] not in (" ", "\t") and ln[:1] not in (" ", "\t"):
                    out.append("\n" * leading if leading else " ")
                else:
                    out.append("\n" * (leading + 1))
            elif leading:
                out.append("\n" * leading)
            out.append(ln)
            prev = ln
            leading = 0
        if chomp == "-":
            return "".join(out)
        if ends_with_break:
            out.append("\n")
        if chomp == "+":
            out.append("\n" * trailing)
        return "".join(out)

    # --- flow collections -----------------------------------------------------

    def flow_skip(self, start_line: int) -> None:
        """Past spaces, line breaks and comments inside a flow collection."""
        while True:
            if self.at_eof():
                raise self.error("a flow collection ([...] or {...}) that is never closed", start_line)
            line = self.line_text()
            while self.col < len(line) and line[self.col] in " \t":
                self.col += 1
            if self.col < len(line) and line[self.col] != "#":
                return
            self.li += 1
            self.col = 0
            if self.at_marker():
                raise self.error("a document marker inside a flow collection", start_line)

    def flow_node(self, path: Path) -> Any:
        start_line = self.li + 1
        opener = self.peek()
        self.col += 1
        closer = "]" if opener == "[" else "}"
        if opener == "[":
            items: List[Any] = []
            while True:
                self.flow_skip(start_line)
                if self.peek() == "]":
                    self.col += 1
                    return items
                sub = path + (len(items),)
                self.field_lines[sub] = self.li + 1
                value, key_like = self.flow_entry(sub, start_line)
                self.flow_skip(start_line)
                if self.peek() == ":" and key_like is not None:
                    # [key: value] is a list of one-entry mappings.
                    self.col += 1
                    self.flow_skip(start_line)
                    k = key_like
                    if self.peek() in (",", "]"):
                        value = {k: None}
                    else:
                        v, _ = self.flow_entry(sub + (k,), start_line)
                        value = {k: v}
                    self.flow_skip(start_line)
                items.append(value)
                if self.peek() == ",":
                    self.col += 1
                    continue
                if self.peek() != "]":
                    raise self.error(f"expected ',' or ']' in a flow list, found {self.peek()!r}")
        result: Dict[str, Any] = {}
        first_lines: Dict[str, int] = {}
        while True:
            self.flow_skip(start_line)
            if self.peek() == "}":
                self.col += 1
                return result
            line = self.li + 1
            if self.peek() in "[{":
                raise self.error("collections as keys are not supported")
            _, key = self.flow_entry(path, start_line, want_key=True)
            if key is None:
                raise self.error("a key of a flow mapping must be text")
            if key in first_lines:
                raise self.error(f"duplicate key {json.dumps(key)} (first at line {first_lines[key]})", line)
            first_lines[key] = line
            sub = path + (key,)
            self.field_lines[sub] = line
            self.flow_skip(start_line)
            value = None
            if self.peek() == ":":
                self.col += 1
                self.flow_skip(start_line)
                if self.peek() not in (",", "}"):
                    value, _ = self.flow_entry(sub, start_line)
                    self.flow_skip(start_line)
            result[key] = value
            if self.peek() == ",":
                self.col += 1
                continue
            if self.peek() != closer:
                raise self.error(f"expected ',' or '}}' in a flow mapping, found {self.peek()!r}")

    def flow_entry(self, path: Path, start_line: int, want_key: bool = False) -> Tuple[Any, Optional[str]]:
        """A value in a flow collection, and its text when it could be a key."""
        self.refuse_special()
        c = self.peek()
        line = self.li + 1
        if c == "?":
            raise self.error("explicit keys (? key) are not supported")
        if c == ":":
            raise self.error("a value cannot start with ':' in a flow collection: quote it")
        if c in "[{":
            return self.flow_node(path), None
        if c == "!":
            self.tag()
            if self.peek() in "\"'":
                text = self.double_quoted() if self.peek() == '"' else self.single_quoted()
            else:
                text = self.plain_flow(line, start_line).text
            return text, text
        if c in "\"'":
            text = self.double_quoted() if c == '"' else self.single_quoted()
            return text, text
        if c == "-" and self.blank_after(self.col):
            raise self.error("a block list item inside a flow collection")
        s = self.plain_flow(line, start_line)
        if want_key:
            return None, self.key_text(s)
        v = self.resolve(s)
        return v, (v if isinstance(v, str) else None)

    def plain_flow(self, line: int, start_line: int) -> _Scalar:
        parts: List[str] = []
        empty = 0
        while True:
            text = self.line_text()
            j = self.col
            while j < len(text):
                ch = text[j]
                # As the CLI's reader: these end a plain scalar in a flow
                # collection wherever they are, and ':' only before a blank.
                if ch in ",?[]{}":
                    break
                if ch == ":" and (j + 1 >= len(text) or text[j + 1] in " \t"):
                    break
                if ch == "#" and j > 0 and text[j - 1] in " \t":
                    break
                j += 1
            seg = text[self.col:j].strip(" \t")
            if seg:
                if parts:
                    parts.append("\n" * empty if empty else " ")
                parts.append(seg)
                empty = 0
            self.col = j
            if j < len(text) and text[j] != "#":
                return _Scalar("".join(parts), True, line)
            # The line ended (or a comment did): the scalar may go on.
            self.li += 1
            self.col = 0
            while not self.at_eof() and not self.line_text().strip(" \t"):
                empty += 1
                self.li += 1
            if self.at_eof():
                raise self.error("a flow collection ([...] or {...}) that is never closed", start_line)
            if self.at_marker():
                raise self.error("a document marker inside a flow collection", start_line)
            t = self.line_text()
            self.col = len(t) - len(t.lstrip(" \t"))
            if t.lstrip(" \t").startswith("#") or (text[j:j + 1] == "#"):
                # A comment ends a plain scalar: what follows is the next token.
                return _Scalar("".join(parts), True, line)
