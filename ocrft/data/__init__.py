"""Data: readers that all yield ocrft.data.record.Record, importers, synthetic data."""
