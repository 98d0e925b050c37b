"""The image size of the fixed-size families (Gemma 3, PaliGemma): read, checked, recorded.

Their SigLIP tower has one position embedding per patch of the size it was trained at, and
the number of image tokens follows from it (Gemma 3 pools to 256, PaliGemma keeps every
patch), so a checkpoint runs at its processor's size only. ``model.image_size`` states that
size in the config (and MLflow); another value is refused here instead of failing in the
vision tower's first forward.
"""

from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger(__name__)


def apply_image_size(processor, path: str, image_size: Optional[int], min_pixels: Optional[int],
                     *, max_pixels: Optional[int]) -> None:  # fmt: skip
    """Set the processor's square size to ``image_size`` (None keeps the processor's own).

    Raises:
        ConfigError: ``image_size`` differs from the size the checkpoint was trained at.
    """
    from ocrft.config import ConfigError

    if min_pixels or max_pixels:
        log.warning("model.min_pixels/model.max_pixels are ignored: %s resizes every image to one square size "
                    "(model.image_size)", path)  # fmt: skip
    own = image_settings(processor)["image_size"]
    if image_size is None or image_size == own:
        return
    raise ConfigError(
        f"model.image_size={image_size}, but {path} was trained at {own}x{own} pixels: its vision tower has "
        f"position embeddings and a number of image tokens for that size only. Set model.image_size={own} "
        "(or leave it unset), or choose a checkpoint of the size you want (e.g. paligemma-3b-pt-224/448/896)"
    )


def image_settings(processor) -> dict[str, int]:
    """The square side the processor resizes every image to."""
    return {"image_size": int(processor.image_processor.size["height"])}
