"""Prompt formatting shared by the chat-template families (Qwen-VL, Gemma 3)."""

from __future__ import annotations

from typing import Any, Optional


def chat_prompt(processor: Any, prompt: str, system: Optional[str] = None) -> str:
    """The chat-template text for one user turn holding an image and ``prompt``,
    ending where the assistant's answer begins."""
    messages = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
