"""Foreground art for the generators: emoji, shapes or text glyphs, each with a caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .assets.emoji import emoji_pool, render_emoji
from .assets.shapes import COLOURS, SHAPES, render_glyph, render_shape

__all__ = ["WORDS", "Art", "random_art", "random_emoji_art", "restyle", "with_article"]

WORDS = ("sun", "cat", "sale", "new", "hello", "art", "love", "go", "top", "hi")


@dataclass
class Art:
    """Straight RGBA uint8 pixels cropped to content, a caption and a source id."""

    pixels: np.ndarray
    caption: str
    source: str


def with_article(words: str) -> str:
    """'red apple' -> 'a red apple', 'owl' -> 'an owl' (phrases with a number or article stay)."""
    first = words.split(" ", 1)[0]
    if first in ("a", "an", "the") or first[:1].isdigit():
        return words
    return ("an " if first[:1] in "aeiou" else "a ") + words


def restyle(caption: str, adjective: str) -> str:
    """'a red apple' + 'faded' -> 'a faded red apple' (the article is re-chosen)."""
    for article in ("a ", "an "):
        if caption.startswith(article):
            return with_article(f"{adjective} {caption[len(article):]}")
    return f"{adjective} {caption}"


def random_emoji_art(rng: np.random.Generator, size: int, split: str,
                     pool: int | None = None) -> Art:
    """A random emoji of ``split`` (of its first ``pool`` if given), longer side ``size``."""
    pool = emoji_pool(split, pool)
    emoji = pool[int(rng.integers(len(pool)))]
    return Art(render_emoji(emoji, size), with_article(emoji.caption), f"emoji:{emoji.id}")


def random_art(rng: np.random.Generator, size: int, split: str,
               weights: tuple[float, float, float] = (0.7, 0.2, 0.1),
               pool: int | None = None) -> Art:
    """Emoji (from the first ``pool`` if given), a coloured shape or a short word, in
    proportions ``weights``."""
    choice = rng.choice(3, p=np.asarray(weights) / sum(weights))
    if choice == 0:
        return random_emoji_art(rng, size, split, pool)
    colour_name = str(rng.choice(list(COLOURS)))
    colour = COLOURS[colour_name]
    if choice == 1:
        shape = str(rng.choice(SHAPES))
        return Art(render_shape(shape, colour, size), f"a {colour_name} {shape}",
                   f"shape:{shape}")
    word = str(rng.choice(WORDS))
    glyph = render_glyph(word, colour, max(8, size // 2))
    return Art(glyph, f"the word {word} in {colour_name}", f"text:{word}")
