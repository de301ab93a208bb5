"""Text helpers shared by the protocol cores (pure)."""

from __future__ import annotations

import unicodedata


def strip_diacritics(text: str) -> str:
    """Letters without their marks: ``Nguyễn Văn Đức`` -> ``Nguyen Van Duc``."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
