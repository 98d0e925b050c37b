"""What the PAGE and ALTO write-backs share: the readings to write, the processing step to
record, and editing an XML file so that all but the edited elements stays as it was.

The file is parsed with lxml (entities unresolved, no network; the format readers have
already refused a DOCTYPE) and written back with its own prolog (XML declaration, comments
before the root) and epilogue taken from the original bytes, so namespaces, prefixes,
attribute order, comments and the indentation of untouched elements are kept. New elements
take the indentation of their neighbours; a removed element takes its whitespace with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ocrft.data.record import DataError


@dataclass(frozen=True)
class Reading:
    """One text the model read, to write into an element: ``conf`` in [0, 1], None when the
    backend records no token log-probabilities (an endpoint): no conf is written then."""

    text: str
    conf: Optional[float]


@dataclass(frozen=True)
class Step:
    """The processing step a filled file records: who wrote its new text, and when."""

    software: str  # e.g. "ocrft 0.4.0"
    model: str  # what read the lines (the model's name, as results name it)
    run: str  # the run folder
    when: str  # ISO 8601, UTC, no fraction: what xsd:dateTime takes


@dataclass
class Filled:
    """What one write-back did to one file."""

    data: bytes
    lines_written: int = 0
    lines_kept: int = 0  # had text already (predict.overwrite=false)
    regions_written: int = 0
    words_cleared: int = 0  # Word elements whose text the new line text contradicted
    missing: list[str] = field(default_factory=list)  # ids read but no longer found


# what XML 1.0 cannot hold: C0 controls but tab, newline and carriage return; surrogates;
# U+FFFE and U+FFFF. A model can emit them (a random or badly tuned one does).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold, stripped."""
    return _NOT_XML.sub("", text).strip()


def parse(path: Path):
    """The lxml tree of ``path`` and its bytes."""
    from lxml import etree

    data = path.read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=False)
    try:
        return etree.fromstring(data, parser), data
    except etree.XMLSyntaxError as e:
        raise DataError(f"malformed XML: {e}", path) from None


def serialize(root, original: bytes) -> bytes:
    """``root`` written out between the original file's prolog and epilogue."""
    from lxml import etree

    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    body = etree.tostring(root, encoding=encoding, xml_declaration=False)
    qname = _qname(root)
    start = re.search(rb"<" + re.escape(qname.encode()) + rb"[\s/>]", original)
    end = original.rfind(b"</" + qname.encode())
    prolog = original[: start.start()] if start else b""
    epilogue = original[original.index(b">", end) + 1 :] if end >= 0 else b"\n"
    return prolog + body + epilogue


def _qname(el) -> str:
    local = el.tag.rpartition("}")[2]
    return f"{el.prefix}:{local}" if el.prefix else local


def local(el) -> str:
    """An element's name without its namespace ("" for comments and processing instructions)."""
    return el.tag.rpartition("}")[2] if isinstance(el.tag, str) else ""


def children(el, *names: str) -> list:
    return [c for c in el if local(c) in names]


def insert(parent, new, *, before: tuple[str, ...] = ()) -> None:
    """Put ``new`` in ``parent`` before its first child named in ``before``, else last, with
    the whitespace its neighbours have."""
    kids = list(parent)
    index = next((i for i, c in enumerate(kids) if local(c) in before), len(kids))
    if not kids:
        parent.append(new)
        return
    if index == len(kids):
        last = kids[-1]
        new.tail = last.tail
        last.tail = kids[-2].tail if len(kids) > 1 else parent.text
        parent.append(new)
    else:
        new.tail = kids[index - 1].tail if index else parent.text
        parent.insert(index, new)


def remove(el) -> None:
    """Remove ``el`` and the whitespace before it, keeping what followed in its place."""
    parent = el.getparent()
    previous = el.getprevious()
    if previous is not None:
        previous.tail = el.tail
    else:
        parent.text = el.tail
    parent.remove(el)


def replace(old, new) -> None:
    new.tail = old.tail
    old.getparent().replace(old, new)


def element(parent, name: str, attrib: Optional[dict] = None, text: Optional[str] = None):
    """A new element in ``parent``'s namespace (its prefix comes with the namespace)."""
    from lxml import etree

    ns = parent.tag[1:].partition("}")[0] if parent.tag.startswith("{") else ""
    el = etree.Element(f"{{{ns}}}{name}" if ns else name, nsmap=None)
    for key, value in (attrib or {}).items():
        el.set(key, value)
    el.text = text
    return el


def conf_text(conf: float) -> str:
    """A confidence as the files write it: 0..1, four decimals."""
    return f"{min(max(conf, 0.0), 1.0):.4f}"
