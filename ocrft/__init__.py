"""ocrft: fine-tune vision-language models into OCR engines and measure them honestly."""

__version__ = "0.1.0"
