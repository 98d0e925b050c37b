"""task=studio: a local web UI over ocrft's run folders (docs/studio.md).

app.py builds the FastAPI + Gradio app; one module per tab: runs.py, results_view.py,
compare_view.py, playground.py, jobs.py (the Launch tab and the /api/jobs API).
Nothing here imports gradio at module level except inside the functions that build the UI.
"""
