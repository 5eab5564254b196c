"""Recipe ``task`` names -> the Task classes that train them."""

from __future__ import annotations

from layerstudio.pipelines.alpha_decompose.training import AlphaDecoderTask, AlphaDecomposeTask
from layerstudio.pipelines.anime_layers.training import AnimeDecoderTask, AnimeLayersTask
from layerstudio.pipelines.decompose_effects.training import LayerDecompTask
from layerstudio.pipelines.layerd.training import TopLayerMattingTask
from layerstudio.pipelines.qwen_layered.training import (
    QwenLayeredTransformerTask,
    QwenLayeredVaeTask,
)

from .art import ARTDecoderTask, ARTTransformerTask
from .joint import JointUNetTask
from .tasks import DiTTextToImageTask, JudgeTask, Task, TextToImageTask, VaeTask
from .transparency import ConditionedUNetTask, TransparentUNetTask, TransparentVaeTask

__all__ = ["TASKS"]

TASKS: dict[str, type[Task]] = {
    "judge": JudgeTask,
    "vae": VaeTask,
    "text_to_image": TextToImageTask,
    "dit_text_to_image": DiTTextToImageTask,
    "transparent_vae": TransparentVaeTask,
    "transparent_unet": TransparentUNetTask,
    "conditioned_unet": ConditionedUNetTask,
    "joint_unet": JointUNetTask,
    "art_decoder": ARTDecoderTask,
    "art_transformer": ARTTransformerTask,
    "qwen_layered_vae": QwenLayeredVaeTask,
    "qwen_layered_transformer": QwenLayeredTransformerTask,
    "top_layer_matting": TopLayerMattingTask,
    "layerdecomp": LayerDecompTask,
    "alpha_decoder": AlphaDecoderTask,
    "alpha_decompose": AlphaDecomposeTask,
    "anime_decoder": AnimeDecoderTask,
    "anime_layers": AnimeLayersTask,
}
