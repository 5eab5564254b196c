"""The contact sheet: readable labels, visible white layers, small documents enlarged."""

from __future__ import annotations

import numpy as np
from PIL import ImageFont

from layerstudio import Layer, LayerStack
from layerstudio.preview import LABEL_FONT_SIZE, _fitted, contact_sheet


def test_small_documents_are_enlarged_and_white_layers_show():
    white = np.zeros((64, 64, 4), np.uint8)
    white[20:40, 20:40] = 255
    stack = LayerStack(64, 64, layers=[Layer("white text", white)])
    sheet = np.asarray(contact_sheet(stack, tile=192, columns=2))
    assert sheet.shape[1] >= 2 * 192  # 64 px tiles enlarged three times, not left tiny
    layer_tile = sheet[:192, 196:196 + 192]
    assert layer_tile.max() == 255 and layer_tile[:40].max() <= 150  # white on a grey board


def test_long_labels_end_in_an_ellipsis_and_keep_their_spaces():
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    assert _fitted("Far mountains shadow (multiply)", font, 400) == \
        "Far mountains shadow (multiply)"
    short = _fitted("Near mountains shadow (multiply)", font, 120)
    assert short.endswith("…") and font.getlength(short) <= 120 and " " in short
