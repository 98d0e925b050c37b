"""Records -> the datasets.Dataset and collate function the trainer consumes."""

from __future__ import annotations

from typing import Sequence

from ocrft.data.record import Record
from ocrft.models.collate import Collator, Sample


def to_train_dataset(records: Sequence[Record], prompt: str):
    """A datasets.Dataset of paths and texts (images are opened per batch, not held).

    ``length`` (image pixels / 256 + target characters) lets the length-grouped sampler
    batch similar samples together, so little compute goes to padding.
    """
    import datasets
    from PIL import Image

    rows = []
    for r in records:
        with Image.open(r.image) as im:
            w, h = im.size
        rows.append({"image": r.image, "text": r.text, "prompt": r.prompt or prompt, "id": r.id, "length": w * h // 256 + len(r.text)})
    return datasets.Dataset.from_list(rows)


class TrainCollator:
    """Trainer-facing collate: dataset rows -> padded tensors with labels."""

    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, rows: list[dict]) -> dict:
        from ocrft.data.images import open_image

        samples = [Sample(image=open_image(r["image"]), prompt=r["prompt"], target=r["text"]) for r in rows]
        return self.collator(samples, padding_side="right")
