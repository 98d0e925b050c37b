"""Tables as olmOCR-Bench's ``table`` checks see them: a grid of cells with their up, down,
left and right neighbours and their headings (allenai/olmocr, ``olmocr/bench/table_parsing.py``,
ported; lxml reads the HTML where the benchmark uses BeautifulSoup).

A cell's text is stored once, at its top-left grid position; a spanning cell has several
neighbours on a side. Markdown tables: every run of lines holding "|" (two lines or more),
the first separator row dropped; the first row and the first column are headings. HTML
tables: a ``th``, or any cell of a row inside ``thead``, is a heading.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

Cell = tuple[int, int]


@dataclass(frozen=True)
class CellSpec:
    text: str
    rowspan: int = 1
    colspan: int = 1
    heading: bool = False


@dataclass(frozen=True)
class TableGrid:
    cell_text: dict[Cell, str]
    heading_cells: set[Cell]
    up: dict[Cell, set[Cell]]
    down: dict[Cell, set[Cell]]
    left: dict[Cell, set[Cell]]
    right: dict[Cell, set[Cell]]

    def _walk(self, start: Cell, relation: dict[Cell, set[Cell]]) -> set[Cell]:
        # The headings reached by walking one way; the cells where the walk ends if none.
        headings, ends, visited, to_visit = set(), set(), set(), {start}
        while to_visit:
            cur = to_visit.pop()
            visited.add(cur)
            if cur in self.heading_cells:
                headings.add(cur)
            if not relation.get(cur):
                ends.add(cur)
            else:
                to_visit |= relation[cur]
        return (headings - {start}) or (ends - {start})

    def top_heading(self, cell: Cell) -> set[Cell]:
        return self._walk(cell, self.up)

    def left_heading(self, cell: Cell) -> set[Cell]:
        return self._walk(cell, self.left)


def _span(value: Optional[str]) -> int:
    try:
        span = int(value) if value not in (None, "") else 1
    except ValueError:
        return 1
    return span if span > 0 else 1


def _occupancy(rows: list[list[CellSpec]]) -> tuple[list[list[Optional[Cell]]], dict[Cell, CellSpec], dict[Cell, str]]:
    """The grid (which cell covers each position), each cell's spec and text by its origin."""
    grid: list[list[Optional[Cell]]] = []
    specs: dict[Cell, CellSpec] = {}
    active: list[Optional[tuple[Cell, int]]] = []  # per column: a rowspan still running
    for r, cells in enumerate(rows):
        entries: list[Optional[Cell]] = []
        col = i = 0
        while i < len(cells) or col < len(active):
            if col < len(active) and active[col] is not None:
                cell, remaining = active[col]
                entries.append(cell)
                active[col] = (cell, remaining - 1) if remaining > 1 else None
                col += 1
                continue
            if i >= len(cells):
                entries.append(None)
                col += 1
                continue
            spec, i = cells[i], i + 1
            origin = (r, col)
            specs[origin] = spec
            active.extend([None] * (col + spec.colspan - len(active)))
            for c in range(col, col + spec.colspan):
                entries.append(origin)
                active[c] = (origin, spec.rowspan - 1) if spec.rowspan > 1 else None
            col += spec.colspan
        grid.append(entries)
    while any(a is not None for a in active):  # rowspans running past the last row
        row = []
        for c, entry in enumerate(active):
            row.append(entry[0] if entry else None)
            active[c] = (entry[0], entry[1] - 1) if entry and entry[1] > 1 else None
        grid.append(row)
    return grid, specs, {origin: spec.text for origin, spec in specs.items()}


def build_grid(rows: list[list[CellSpec]]) -> Optional[TableGrid]:
    """The grid and neighbour relations of rows of cells (None for a table with no cell)."""
    grid, specs, text = _occupancy(rows)
    columns = {c for row in grid for c, v in enumerate(row) if v is not None}
    if not text or not columns:
        return None
    width, height = max(columns) + 1, len(grid)
    grid = [(row + [None] * width)[:width] for row in grid]
    rel: dict[str, dict[Cell, set[Cell]]] = {k: defaultdict(set) for k in ("up", "down", "left", "right")}
    for (r0, c0), spec in specs.items():
        r1, c1 = r0 + spec.rowspan - 1, c0 + spec.colspan - 1
        origin = (r0, c0)
        rows_span, cols_span = range(r0, min(r1, height - 1) + 1), range(c0, c1 + 1)
        scans = {
            "right": [(r, range(c1 + 1, width), True) for r in rows_span],
            "left": [(r, range(c0 - 1, -1, -1), True) for r in rows_span],
            "down": [(c, range(r1 + 1, height), False) for c in cols_span],
            "up": [(c, range(r0 - 1, -1, -1), False) for c in cols_span],
        }
        for name, lines in scans.items():
            for fixed, steps, along_row in lines:
                for step in steps:
                    neighbour = grid[fixed][step] if along_row else grid[step][fixed]
                    if neighbour is not None and neighbour != origin:
                        rel[name][origin].add(neighbour)
                        break
    heading = {origin for origin, spec in specs.items() if spec.heading}
    return TableGrid(text, heading, **{k: {c: set(v[c]) for c in text} for k, v in rel.items()})


def _markdown_rows(lines: list[str]) -> list[list[str]]:
    separator = next((i for i, line in enumerate(lines)
                      if line.replace("|", "").strip() and all(ch in "- :" for ch in line.replace("|", "").strip())), None)  # fmt: skip
    rows = []
    for i, line in enumerate(lines):
        if i == separator or (line.strip() and all(ch in "- :|" for ch in line)):
            continue
        cells = [cell.strip() for cell in line.split("|")]
        cells = cells[1:] if cells and cells[0] == "" else cells
        cells = cells[:-1] if cells and cells[-1] == "" else cells
        if cells:
            rows.append(cells)
    return rows


def markdown_grids(text: str) -> list[TableGrid]:
    """Every markdown table of ``text`` (see the module docstring)."""
    runs, current = [], []
    for line in text.strip().split("\n"):
        if "|" in line:
            current.append(line)
        elif current:
            runs.append(current)
            current = []
    runs.append(current)
    grids = []
    for run in (r for r in runs if len(r) >= 2):
        rows = _markdown_rows(run)
        specs = [[CellSpec(cell, heading=r == 0 or c == 0) for c, cell in enumerate(row)] for r, row in enumerate(rows)]
        grid = build_grid(specs) if specs else None
        if grid:
            grids.append(grid)
    return grids


def html_grids(text: str) -> list[TableGrid]:
    """Every HTML table of ``text``, nested ones too."""
    from lxml import html as lxml_html

    if "<table" not in text.lower():
        return []
    from lxml import etree

    try:
        root = lxml_html.fromstring(f"<div>{text}</div>")
    except (etree.ParserError, ValueError):  # nothing lxml can build a tree from: no table
        return []
    grids = []
    for table in root.iter("table"):
        rows = list(table.iter("tr"))
        specs = []
        for r, tr in enumerate(rows):
            in_head = any(a.tag == "thead" for a in tr.iterancestors())
            row = []
            for cell in (c for c in tr if c.tag in ("td", "th")):
                for br in cell.iter("br"):
                    br.tail = "\n" + (br.tail or "")
                raw_rowspan = cell.get("rowspan")
                rowspan = max(1, len(rows) - r) if (raw_rowspan or "").strip() == "0" else _span(raw_rowspan)
                row.append(CellSpec(cell.text_content().strip(), rowspan=rowspan, colspan=_span(cell.get("colspan")),
                                    heading=cell.tag == "th" or in_head))  # fmt: skip
            specs.append(row)
        grid = build_grid(specs) if rows else None
        if grid:
            grids.append(grid)
    return grids
