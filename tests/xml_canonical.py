"""Canonical XML (C14N) of a page file without what a write-back may change, so a test can
compare everything else byte for byte (tests/unit/test_page_writeback.py, test_alto_writeback.py)."""

from __future__ import annotations

from typing import Callable

from lxml import etree


def canonical(data: bytes, *, written: Callable[[etree._Element, str], bool], mark: str | None = None) -> bytes:
    """``data`` with the elements ``written(element, local name)`` picks removed, the attribute
    ``mark`` dropped where it holds an ``ocrft:`` mark, and whitespace-only text ignored."""
    root = etree.fromstring(data)
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        if written(el, etree.QName(el).localname):
            el.getparent().remove(el)
        elif mark and "ocrft:" in el.get(mark, ""):
            del el.attrib[mark]
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tail = el.text = None if not (el.text or "").strip() else el.text
    return etree.tostring(root, method="c14n")
