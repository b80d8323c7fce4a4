"""Docstring text (reStructuredText / numpydoc) as HTML for the report pages.

The report shows study summaries, justifications, details and notes written in the
docstring style of the code base, so Sphinx roles (``:func:`x```), inline literals
(double backticks) and emphasis must read as formatting, not as markup. This is a small
subset of reST, enough for those texts: paragraphs, bullet lists, literal blocks,
section titles and the inline markup below. Everything else is shown as text, escaped.

Inline markup
    ``:role:`target``` (any role, ``~a.b.c`` shows ``c``, ``text <target>`` shows ``text``)
    and ````literal```` and ```interpreted``` become ``<code>``; ``**strong**``,
    ``*emphasis*``; footnote references ``[1]_`` show as ``[1]``.
"""

from __future__ import annotations

import html
import inspect
import re
import textwrap

from markupsafe import Markup

__all__ = ["rst_inline", "rst_to_html"]

_INLINE = re.compile(
    r"(?P<role>(?::[\w.+-]+)+:`(?P<role_body>[^`]+)`)"
    r"|``(?P<literal>.+?)``"
    r"|`(?P<interp>[^`]+)`_{0,2}"
    r"|\*\*(?P<strong>\S(?:.*?\S)?)\*\*"
    r"|(?<![\w*\\])\*(?P<em>[^\s*](?:[^*]*?[^\s*\\])?)\*(?![\w*])"
    r"|\[(?P<foot>[\w#*]+)\]_(?!\w)"
)
_TITLE_RULE = re.compile(r"[-=~^\"'`#*+]{3,}")
_BULLET = re.compile(r"(\s*)([-*+]|\d+[.)])\s+")


def _role_text(body: str) -> str:
    m = re.fullmatch(r"(?s)(.*?)\s*<([^<>]+)>", body)
    if m and m.group(1):
        return m.group(1)
    target = m.group(2) if m else body
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target.lstrip("!")


def rst_inline(text: str) -> Markup:
    """One line of reST inline markup as safe HTML (all other text escaped)."""
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        pos = m.end()
        kind = next(k for k in ("role_body", "literal", "interp", "strong", "em", "foot") if m.group(k) is not None)
        if kind == "role_body":
            out.append(f"<code>{html.escape(_role_text(m.group('role_body')), quote=False)}</code>")
        elif kind in ("literal", "interp"):
            out.append(f"<code>{html.escape(m.group(kind), quote=False)}</code>")
        elif kind == "strong":
            out.append(f"<strong>{html.escape(m.group('strong'), quote=False)}</strong>")
        elif kind == "em":
            out.append(f"<em>{html.escape(m.group('em'), quote=False)}</em>")
        else:  # footnote reference
            out.append(f"[{html.escape(m.group('foot'), quote=False)}]")
    out.append(html.escape(text[pos:], quote=False))
    return Markup("".join(out))


def _join(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines)


def _list_items(lines: list[str]) -> list[str] | None:
    """The items of a bullet/enumerated list block, or None when the block is not one."""
    first = _BULLET.match(lines[0])
    if not first:
        return None
    indent = first.group(1)
    items: list[list[str]] = []
    for line in lines:
        m = _BULLET.match(line)
        if m and m.group(1) == indent:
            items.append([line[m.end():]])
        elif items and line.startswith(indent) and line[len(indent):len(indent) + 1].isspace():
            items[-1].append(line)
        else:
            return None
    return [_join(item) for item in items]


def _block(lines: list[str], literal_next: bool) -> tuple[str, bool]:
    """HTML of one blank-line separated block, and whether a literal block follows (``::``)."""
    if literal_next or lines[0].startswith("Traceback (most recent call last)"):
        body = "\n".join(lines)
        return f'<pre class="wrap">{html.escape(body, quote=False)}</pre>', False
    if len(lines) == 2 and _TITLE_RULE.fullmatch(lines[1].strip()) and len(lines[1].strip()) >= len(lines[0].strip()):
        return f"<h3>{rst_inline(lines[0].strip())}</h3>", False
    items = _list_items(lines)
    if items is not None:
        return "<ul>" + "".join(f"<li>{rst_inline(i)}</li>" for i in items) + "</ul>", False
    text = _join(lines)
    literal = text.endswith("::")
    if literal:
        text = text[:-2].rstrip()
        text = text + ":" if text else ""
    return (f"<p>{rst_inline(text)}</p>" if text else ""), literal


def rst_to_html(text: str | None) -> Markup:
    """A docstring-style text (paragraphs, lists, ``::`` literal blocks) as safe HTML.

    Lines of a paragraph are joined, so the browser wraps them; a block after ``::`` and a
    Python traceback keep their lines (wrapped, never scrolling sideways).
    """
    if not text:
        return Markup("")
    cleaned = inspect.cleandoc(str(text))
    parts: list[str] = []
    literal_next = False
    for raw in re.split(r"\n[ \t]*\n", cleaned):
        lines = raw.rstrip().split("\n")
        if not raw.strip():
            continue
        if literal_next:  # a literal block keeps its indentation relative to itself
            lines = textwrap.dedent("\n".join(lines)).split("\n")
        chunk, literal_next = _block(lines, literal_next)
        parts.append(chunk)
    return Markup("\n".join(parts))
