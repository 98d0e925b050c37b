"""A table diff by cell for the report: the label's tables beside the prediction's, cell by
cell at the same row and column (what a reader checks first; TEDS, which aligns the trees,
is the score). A cell is ``same``, ``changed`` (both texts shown), ``missing`` (the label has
it, the prediction not) or ``extra`` (the prediction only). The i-th table of the label is set
against the i-th of the prediction, as TEDS pairs them."""

from __future__ import annotations

from itertools import zip_longest

from ocrft.evaluation.tables import find_tables, parse_table


def table_rows(table_html: str) -> list[list[str]]:
    """The cell texts of a table, row by row (spans are not expanded)."""
    table = parse_table(table_html)
    if table is None:
        return []
    return [[" ".join(cell.text_content().split()) for cell in tr if cell.tag == "td"] for tr in table.iter("tr")]


def _cell(ref: str | None, pred: str | None) -> dict:
    status = "extra" if ref is None else "missing" if pred is None else "same" if ref == pred else "changed"
    return {"ref": ref, "pred": pred, "status": status}


def cell_diff(prediction: str, label: str) -> list[list[list[dict]]]:
    """Per label table, rows of cells ``{"ref", "pred", "status"}`` (see the module docstring)."""
    preds = find_tables(prediction)
    diffs = []
    for i, ref_html in enumerate(find_tables(label)):
        ref_rows, pred_rows = table_rows(ref_html), table_rows(preds[i]) if i < len(preds) else []
        diffs.append([[_cell(r, p) for r, p in zip_longest(ref_row or [], pred_row or [])]
                      for ref_row, pred_row in zip_longest(ref_rows, pred_rows)])  # fmt: skip
    return diffs
