"""Evaluation: generation, metrics, normalization, results files, endpoint clients, and the
HTML rendering of results (jinja2 templates in ``templates/``, shared with the studio)."""
