"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: dynamic-resolution vision towers behind one chat format.

The three share a processor design (patches merged 2x2 into image tokens, a ChatML
template), so one module serves them; they differ in model class and tower config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ocrft.models.chat import chat_prompt
from ocrft.models.family import ModelFamily

log = logging.getLogger(__name__)

_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip

# The ChatML template of the Qwen-VL checkpoints, reduced to what OCR uses (text and images)
# and without the default system turn, which would cost tiny char-level models ~40 tokens.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Tiny models see 8x8-pixel patches merged 2x2: a 32-pixel-high line is two token rows.
_TINY_PATCH = 8


def _processor_class(variant: str):
    """An image-only subclass of the variant's processor.

    The stock processors also hold a video processor, which requires torchvision; OCR
    needs no video, and torchvision is not installable beside the pinned CPU torch.
    """
    if variant == "qwen3_vl":
        from transformers import Qwen3VLProcessor as Base
    else:
        from transformers import Qwen2VLProcessor as Base

    class ImageOnlyProcessor(Base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)

    ImageOnlyProcessor.__name__ = Base.__name__  # saved processor_config names the stock class
    return ImageOnlyProcessor


def _loader(variant: str):
    def load_processor(
        path: str, min_pixels: Optional[int] = None, max_pixels: Optional[int] = None, image_size: Optional[int] = None
    ):
        from transformers import AutoTokenizer
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        size = dict(image_processor.size)
        if min_pixels:
            size["shortest_edge"] = min_pixels
        if max_pixels:
            size["longest_edge"] = max_pixels
        image_processor.size = size
        if image_size:
            log.warning("model.image_size=%d is ignored: %s resizes each image within model.min_pixels..model.max_pixels",
                        image_size, variant)  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(path)
        template = _read_chat_template(path) or tokenizer.chat_template
        return _processor_class(variant)(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)

    return load_processor


def image_settings(processor) -> dict[str, int]:
    """The pixel budget the processor resizes every image into (its image tokens are
    pixels / (patch * merge)^2: 28x28 pixels per token for Qwen2/2.5-VL, 32x32 for Qwen3-VL)."""
    size = processor.image_processor.size
    return {"min_pixels": int(size["shortest_edge"]), "max_pixels": int(size["longest_edge"])}


def _read_chat_template(path: str) -> Optional[str]:
    """The processor's chat template from a local checkpoint folder or the hub cache."""
    import json

    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        try:
            file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            file = None
        if file:
            text = Path(file).read_text(encoding="utf-8")
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None


def _tiny_tokenizer():
    from ocrft.models.charset_tokenizer import build_tokenizer

    return build_tokenizer(
        _SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        vision_bos_token="<|vision_start|>",
        vision_eos_token="<|vision_end|>",
    )


def _tiny_processor(variant: str):
    # Imported here, not at the top: the registry imports this module for every run's config check.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = _tiny_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=_TINY_PATCH,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * _TINY_PATCH) ** 2,
        max_pixels=64 * 1024,
    )
    return _processor_class(variant)(image_processor=image_processor, tokenizer=tokenizer, chat_template=_CHAT_TEMPLATE)


def tiny_qwen_config(variant: str, tokenizer, hidden_size: int = 64, layers: int = 2, heads: int = 4, vision_width: int = 32):
    """A small config of the variant's real architecture (same classes, tiny sizes)."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    from ocrft.models import tiny

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIALS}
    head_dim = hidden_size // heads
    # mrope splits half the head dim into temporal/height/width sections.
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(
        **tiny.text_sizes(tokenizer, hidden_size, layers, heads),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(depth=2, num_heads=2, patch_size=_TINY_PATCH, spatial_merge_size=2, temporal_patch_size=2)
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    if variant == "qwen2_vl":
        vision.update(embed_dim=vision_width, hidden_size=hidden_size, mlp_ratio=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    if variant == "qwen2_5_vl":
        vision.update(
            hidden_size=vision_width,
            intermediate_size=vision_width * 2,
            out_hidden_size=hidden_size,
            window_size=4 * _TINY_PATCH,
            fullatt_block_indexes=[1],
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
    text.update(head_dim=head_dim)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
    vision.update(
        hidden_size=vision_width,
        intermediate_size=vision_width * 2,
        out_hidden_size=hidden_size,
        num_position_embeddings=256,
        deepstack_visual_indexes=[1],
    )
    return Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)


def _tiny_builder(variant: str, model_class: str):
    def build_tiny(out_dir: Path, **sizes) -> None:
        import transformers

        from ocrft.models import tiny

        processor = _tiny_processor(variant)
        config = tiny_qwen_config(variant, processor.tokenizer, **sizes)
        model = tiny.instantiate(getattr(transformers, model_class), config, init=_wider_vision_init)
        text_config = config.text_config
        tiny.save(model, processor, out_dir, eos_token_id=text_config.eos_token_id, pad_token_id=text_config.pad_token_id)

    return build_tiny


def _wider_vision_init(model) -> None:
    # At the language model's init scale (0.02) a from-scratch vision tower gives every glyph
    # nearly the same features, and the LM never learns to tell them apart (a 1.5M-parameter
    # model stayed at chance on single digits); std 0.1 learns them in ~80 steps on a CPU.
    for param in model.model.visual.parameters():
        if param.dim() > 1:
            param.normal_(0.0, 0.1)


def _family(name: str, model_class: str) -> ModelFamily:
    return ModelFamily(
        name=name,
        model_class=model_class,
        load_processor=_loader(name),
        image_settings=image_settings,
        image_token="<|image_pad|>",
        format_prompt=chat_prompt,
        target_suffix=lambda processor: "<|im_end|>",
        build_tiny=_tiny_builder(name, model_class),
        vision_modules=("visual",),
    )


QWEN2_VL = _family("qwen2_vl", "Qwen2VLForConditionalGeneration")
QWEN2_5_VL = _family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration")
QWEN3_VL = _family("qwen3_vl", "Qwen3VLForConditionalGeneration")
