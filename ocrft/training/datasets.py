"""Records -> the datasets.Dataset and collate function the trainer consumes."""

from __future__ import annotations

from typing import Optional, Sequence

from ocrft.data.record import Record
from ocrft.models.collate import Collator, Sample


def to_train_dataset(records: Sequence[Record], prompt: str, lengths: Optional[Sequence[int]] = None):
    """A datasets.Dataset of paths and texts (images are opened per batch, not held).

    ``length`` lets the length-grouped sampler batch similar samples together, so little
    compute goes to padding: each record's token count when ``lengths`` gives them
    (ocrft.training.token_lengths), else image pixels / 256 + target characters.
    """
    import datasets
    from PIL import Image

    rows = []
    for i, r in enumerate(records):
        if lengths is not None:
            length = lengths[i]
        else:
            with Image.open(r.image) as im:
                w, h = im.size
            length = w * h // 256 + len(r.text)
        rows.append({"image": r.image, "text": r.text, "prompt": r.prompt or prompt, "id": r.id, "length": length})
    return datasets.Dataset.from_list(rows)


class TrainCollator:
    """Trainer-facing collate: dataset rows -> padded tensors with labels."""

    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, rows: list[dict]) -> dict:
        from ocrft.data.images import open_image

        samples = [Sample(image=open_image(r["image"]), prompt=r["prompt"], target=r["text"], id=r["id"]) for r in rows]
        return self.collator(samples, padding_side="right")
