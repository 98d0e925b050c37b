"""Tables in a text: found (HTML ``<table>`` or GitHub markdown), read into one HTML tree, and
scored by TEDS (Zhong et al. 2020, "Image-based table recognition", PubTabNet's reference code).

TEDS = 1 - APTED(pred tree, ref tree) / max(nodes of the two trees). A node rename costs 1
unless tag, colspan and rowspan all agree; two ``td`` then cost the normalized Levenshtein
distance of their tokens (each character of the cell's text and each tag inside it, as the
reference tokenizes). TEDS-S (``structure_only``) compares the tree alone: no cell content.

Before scoring, both tables are put in PubTabNet's annotation shape, so that one table
written two ways scores 1.0: ``th`` is read as ``td``, rows lying directly under ``<table>``
go into a ``tbody``, and a first row made of header cells only, outside any ``thead``,
becomes the ``thead``. A markdown table's header row is its ``thead``; its body rows are
padded or cut to the header's width (GitHub's rule). Cell text is compared raw, as the
reference does (eval.normalization is not applied inside cells).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any, Optional

_HTML_TABLE = re.compile(r"<table\b.*?</table\s*>", re.IGNORECASE | re.DOTALL)
_MD_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_MD_PIPE = re.compile(r"(?<!\\)\|")


@dataclass
class Node:
    """One node of a table tree: what apted walks (``children``) and what a rename compares."""

    tag: str
    colspan: Optional[int] = None
    rowspan: Optional[int] = None
    content: list[str] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)

    def size(self) -> int:
        return 1 + sum(child.size() for child in self.children)


def find_tables(text: str) -> list[str]:
    """Every table in ``text`` as HTML, in the order they appear: HTML tables as written,
    markdown tables converted (:func:`markdown_table_html`)."""
    found = [(m.start(), m.group(0)) for m in _HTML_TABLE.finditer(text)]
    outside = _HTML_TABLE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keeps line numbers
    lines = outside.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    i = 0
    while i < len(lines) - 1:
        if _is_header(lines[i], lines[i + 1]):
            end = i + 2
            while end < len(lines) and "|" in lines[end] and lines[end].strip():
                end += 1
            found.append((offsets[i], markdown_table_html(lines[i:end])))
            i = end
        else:
            i += 1
    return [table for _, table in sorted(found, key=lambda pair: pair[0])]


def _is_header(line: str, separator: str) -> bool:
    # GFM: a delimiter row of hyphens with as many cells as the header; pipes required, so
    # "a | b" over a setext underline "---" stays a heading
    return ("|" in line and "|" in separator and "-" in separator and bool(_MD_SEPARATOR.match(separator))
            and len(_md_cells(line)) == len(_md_cells(separator)))  # fmt: skip


def _md_cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in _MD_PIPE.split(line)]


def markdown_table_html(lines: list[str]) -> str:
    """A GitHub markdown table (header, separator, body rows) as PubTabNet-style HTML."""
    header = _md_cells(lines[0])
    width = len(header)

    def row(cells: list[str]) -> str:
        cells = (cells + [""] * width)[:width]
        return "<tr>" + "".join(f"<td>{html.escape(c, quote=False)}</td>" for c in cells) + "</tr>"

    body = "".join(row(_md_cells(line)) for line in lines[2:])
    return f"<table><thead>{row(header)}</thead><tbody>{body}</tbody></table>"


def _canonical(table: Any) -> Any:
    """``table`` (an lxml element) in PubTabNet's annotation shape (see the module docstring)."""
    from lxml import etree

    for th in table.iter("th"):
        th.tag = "td"
    loose = [child for child in table if child.tag == "tr"]
    if loose:
        tbody = etree.Element("tbody")
        table.insert(table.index(loose[0]), tbody)
        for tr in loose:
            tbody.append(tr)
    return table


def _headed(table: Any) -> None:
    # A first row of header cells only, with no thead anywhere, is the header (th read in
    # _canonical; called before it so th is still visible).
    from lxml import etree

    if table.find("thead") is not None:
        return
    rows = table.xpath("./tr|./tbody/tr")
    if rows and len(rows[0]) and all(cell.tag == "th" for cell in rows[0]):
        thead = etree.Element("thead")
        first = rows[0]
        parent = first.getparent()
        parent.insert(parent.index(first), thead)
        thead.append(first)
        if parent is not table:  # the thead goes before the tbody, not inside it
            parent.remove(thead)
            table.insert(table.index(parent), thead)


def parse_table(table_html: str) -> Any:
    """The ``<table>`` element of ``table_html`` (lxml) in PubTabNet's shape, or None."""
    from lxml import html as lxml_html

    if not table_html.strip():
        return None
    parser = lxml_html.HTMLParser(remove_comments=True, encoding="utf-8")
    root = lxml_html.fromstring(table_html.encode("utf-8"), parser=parser)
    table = root if root.tag == "table" else next(iter(root.iter("table")), None)
    if table is None:
        return None
    _headed(table)
    return _canonical(table)


def _tokens(node: Any, out: list[str]) -> None:
    # The reference's tokenize(): a tag, its text's characters, its children, its closing
    # tag, then its tail's characters (a td's own tail is outside the cell).
    out.append(f"<{node.tag}>")
    out.extend(node.text or "")
    for child in node:
        _tokens(child, out)
    out.append(f"</{node.tag}>")
    if node.tag != "td":
        out.extend(node.tail or "")


def _tree(element: Any, structure_only: bool) -> Node:
    if element.tag == "td":
        content: list[str] = []
        if not structure_only:
            _tokens(element, content)
            content = content[1:-1]
        return Node("td", int(element.get("colspan", "1")), int(element.get("rowspan", "1")), content)
    node = Node(str(element.tag))
    node.children = [_tree(child, structure_only) for child in element if isinstance(child.tag, str)]
    return node


def _apted_config():
    from apted import Config
    from rapidfuzz.distance import Levenshtein

    class TableConfig(Config):
        def rename(self, a: Node, b: Node) -> float:
            if (a.tag, a.colspan, a.rowspan) != (b.tag, b.colspan, b.rowspan):
                return 1.0
            if a.tag == "td" and (a.content or b.content):
                return Levenshtein.distance(a.content, b.content) / max(len(a.content), len(b.content))
            return 0.0

        def children(self, node: Node) -> list[Node]:
            return node.children

    return TableConfig()


def teds(prediction: str, reference: str, *, structure_only: bool = False) -> float:
    """TEDS (or TEDS-S) of one predicted table against one reference table, both HTML.

    0.0 when either side is empty or holds no ``<table>`` (the reference's rule).
    """
    from apted import APTED

    pred, ref = parse_table(prediction), parse_table(reference)
    if pred is None or ref is None:
        return 0.0
    tree_pred, tree_ref = _tree(pred, structure_only), _tree(ref, structure_only)
    distance = APTED(tree_pred, tree_ref, _apted_config()).compute_edit_distance()
    return 1.0 - float(distance) / max(tree_pred.size(), tree_ref.size())


def table_scores(prediction: str, reference: str) -> Optional[dict[str, float]]:
    """``{"teds", "teds_struct"}`` of a sample whose reference holds tables, else None.

    The i-th reference table is scored against the i-th predicted table (0.0 where the
    prediction has fewer); the sample's score is the mean over its reference tables.
    """
    refs = find_tables(reference)
    if not refs:
        return None
    preds = find_tables(prediction)
    pairs = [(preds[i] if i < len(preds) else "", ref) for i, ref in enumerate(refs)]
    return {
        "teds": sum(teds(p, r) for p, r in pairs) / len(refs),
        "teds_struct": sum(teds(p, r, structure_only=True) for p, r in pairs) / len(refs),
    }
