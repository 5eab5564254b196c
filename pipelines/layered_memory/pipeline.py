"""Layered editing memory ("Improving Editability in Image Generation with Layer-wise Memory").

Training-free, on any SD 1.5-, SDXL- or PixArt-shaped text-to-image model (``backbone.py``).
One call makes one step of a session and returns the new :class:`EditMemory`:

- ``background``: the scene, generated from the prompt or taken from ``image`` (its
  trajectory is then the image's latent noised along the schedule with one seeded noise);
- ``add``: a new object from ``prompt`` inside a rough ``mask``;
- ``replace``: layer ``layer`` redrawn from a new prompt (optionally a new mask);
- ``remove``: layer ``layer`` taken out.

**Background Consistency Guidance** (BCG): after every denoising step the latents outside the
repainted region are replaced by the memory's latents at the same step,
``z = (1 - m) * memory[t] + m * z``, except during the last ``release`` fraction of the steps,
which run free so the edges blend. The paper frees the whole picture there
(``release_band=None``); by default here only a band of ``release_band`` latent pixels
around the region is freed: on the shipped tiny-sd the late steps still carry enough noise
to repaint a light background (4.4 dB of background PSNR lost, docs/edit.md), and the memory
that later edits keep to would inherit it. ``release=0`` keeps BCG to the end.

**Multi-Query Disentanglement** (MQD): cross-attention reads every live prompt, each pixel only
its own region's (``regions.py``; later masks occlude earlier ones). **Removal** blends the stored
trajectories, the one from before the removed edit inside its region and the latest elsewhere,
for the first ``remove_from`` of the steps, then denoises the rest under BCG. Turning BCG off
gives the baseline, plain masked inpainting: the previous picture is re-encoded and, noised
afresh, replaces the latents outside the mask at every step (diffusers' latent-blending
inpainting).

Every step also becomes a layer of the session's document (``layers.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from layerstudio.document import LayerStack
from layerstudio.imaging import as_rgba_array, to_uint8

from ..output_types import check_output_type, pictures_as
from .backbone import TextCondition, encode_text, kind_of, predict_noise
from .layers import memory_stack
from .memory import OPERATIONS, EditMemory, LiveLayer, MemoryStep
from .regions import RegionPlan, ownership, regional_attention

__all__ = ["LayeredMemoryEditPipeline", "LayeredMemoryOutput"]

COMPONENTS = ("vae", "text_encoder", "tokenizer", "scheduler", "unet", "transformer",
              "text_encoder_2", "tokenizer_2")


@dataclass
class LayeredMemoryOutput(BaseOutput):
    """``images``: the edited pictures (PIL, or arrays / tensors as ``output_type`` asks;
    the latents for "latent"); ``layers``: each result's document; ``memories``: each
    result's memory, to edit on from (none for "latent")."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    layers: list[LayerStack]
    memories: list[EditMemory]


@dataclass
class _Plan:
    """What one call denoises: its region, the text of each region, the memory to keep."""

    region: torch.Tensor | None  # (H, W) repainted; None: everywhere
    blocks: list[TextCondition]  # one per region, bottom to top (batch 1 or B each)
    masks: list[torch.Tensor]  # the edit masks under MQD, bottom to top
    layer: int | None = None


class LayeredMemoryEditPipeline(DiffusionPipeline):
    """One step of a layered editing session per call (module docstring).
    ``LayeredMemoryEditPipeline.around(pipe)`` wraps a loaded text-to-image pipeline's
    components without copying weights."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->transformer->vae"
    _optional_components: ClassVar[list[str]] = ["unet", "transformer", "text_encoder_2",
                                                 "tokenizer_2"]
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents"]

    def __init__(self, vae, text_encoder, tokenizer, scheduler, unet=None, transformer=None,
                 text_encoder_2=None, tokenizer_2=None) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, unet=unet, transformer=transformer,
                              text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae else 8
        self._guidance_scale = 7.5
        self._num_timesteps = 0
        self._interrupt = False

    @classmethod
    def around(cls, pipe: DiffusionPipeline) -> LayeredMemoryEditPipeline:
        """The editing pipeline on ``pipe``'s backbone, text encoders, VAE and scheduler."""
        parts = pipe.components
        edit = cls(**{name: parts.get(name) for name in COMPONENTS})
        edit.to(pipe.device)
        return edit

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def _denoiser(self) -> torch.nn.Module:
        return self.transformer if kind_of(self) == "pixart" else self.unet

    # --- text ---------------------------------------------------------------------------------

    def encode_prompt(self, prompt: str | list[str], negative_prompt: str | list[str] = ""
                      ) -> tuple[TextCondition, TextCondition]:
        """(prompt, negative prompt) conditions, one row per prompt; their tensors are what
        ``prompt_embeds`` / ``pooled_prompt_embeds`` / ``prompt_attention_mask`` and the
        ``negative_*`` arguments take."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) \
            else list(negative_prompt)
        return encode_text(self, prompts), encode_text(self, negatives, zeros_for_empty=True)

    def _conditions(self, prompt, negative_prompt, given: dict[str, Any]
                    ) -> tuple[TextCondition, TextCondition]:
        embeds = given["prompt_embeds"]
        if prompt is not None and embeds is not None:
            raise ValueError("give prompt or prompt_embeds, not both")
        if embeds is None:
            return self.encode_prompt("" if prompt is None else prompt, negative_prompt or "")
        condition = TextCondition(embeds, given["pooled_prompt_embeds"],
                                  given["prompt_attention_mask"])
        if given["negative_prompt_embeds"] is not None:
            negative = TextCondition(given["negative_prompt_embeds"],
                                     given["negative_pooled_prompt_embeds"],
                                     given["negative_prompt_attention_mask"])
        else:
            negative = encode_text(self, [negative_prompt or ""] * embeds.shape[0],
                                   zeros_for_empty=True)
        return condition, negative

    # --- pictures -------------------------------------------------------------------------

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (``output_type="latent"``) -> (B, H, W, 3) float pictures in [0, 1]."""
        pictures = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor,
                                   return_dict=False)[0]
        return (pictures / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()

    @torch.no_grad()
    def _encode(self, picture: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, C, h, w) scaled latents (the posterior mean)."""
        pixels = torch.from_numpy(picture.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor

    @staticmethod
    def _picture(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """An RGBA array as (H, W, 3) uint8 of ``size`` (W, H), transparency flattened on
        white."""
        rgba = to_uint8(rgba).astype(np.float32)
        rgb = rgba[..., :3] * rgba[..., 3:] / 255 + 255 - rgba[..., 3:]
        picture = PIL.Image.fromarray(np.rint(rgb).clip(0, 255).astype(np.uint8))
        if picture.size != size:
            picture = picture.resize(size, PIL.Image.LANCZOS)
        return np.asarray(picture)

    @staticmethod
    def _mask(mask: Any, size: tuple[int, int]) -> torch.Tensor:
        """A rough mask (greyscale or RGB(A) image or array, white = the edit's place) as
        (H, W) float in [0, 1] of ``size`` (W, H)."""
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        array = np.asarray(mask)
        if array.dtype == bool:
            array = array.astype(np.float32)
        elif array.dtype == np.uint8:
            array = array.astype(np.float32) / 255
        array = array.astype(np.float32)
        if array.ndim == 3:
            array = array[..., :3].mean(-1) if array.shape[-1] >= 3 else array[..., 0]
        if array.ndim != 2:
            raise ValueError(f"a mask is a 2-D picture, got shape {array.shape}")
        tensor = torch.from_numpy(np.clip(array, 0, 1))
        if tuple(tensor.shape) != (size[1], size[0]):
            tensor = F.interpolate(tensor[None, None], size=(size[1], size[0]),
                                   mode="bilinear")[0, 0]
        if float(tensor.max()) <= 0:
            raise ValueError("the mask is empty: paint where the edit should go")
        return tensor

    def _latent_mask(self, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(mask[None, None].to(like.device, torch.float32),
                             size=like.shape[-2:], mode="area").to(like.dtype)

    # --- the session operations ----------------------------------------------------------------

    def _plan(self, operation: str, memory: EditMemory, mask: torch.Tensor | None,
              layer: int | None, condition: TextCondition | None) -> _Plan:
        """Region, region prompts and masks of one edit on ``memory``."""
        live = memory.live_layers()
        background = memory.steps[0].condition
        masks = [one.mask for one in live]
        blocks = [background] + [one.condition for one in live]
        if operation == "add":
            return _Plan(mask, [*blocks, condition], [*masks, mask])
        target: LiveLayer = memory.layer(layer)
        index = [one.number for one in live].index(target.number)
        old_own = ownership(masks)[index + 1]
        if operation == "remove":
            del masks[index], blocks[index + 1]
            return _Plan(old_own, blocks, masks, target.number)
        masks[index] = target.mask if mask is None else mask
        blocks[index + 1] = condition
        region = torch.maximum(old_own, ownership(masks)[index + 1])
        return _Plan(region, blocks, masks, target.number)

    def _region_plan(self, plan: _Plan, batch: int, negative: TextCondition
                     ) -> tuple[TextCondition, TextCondition, RegionPlan | None]:
        """The (conditional, unconditional) text of a batch under MQD, and its plan."""
        device, dtype = self._execution_device, self._denoiser.dtype
        blocks = [block.to(device, dtype) for block in plan.blocks]
        blocks = [block if block.embeds.shape[0] == batch else block.repeat(batch)
                  for block in blocks]
        negative = negative if negative.embeds.shape[0] == batch else \
            negative.map(lambda t: t[:1]).repeat(batch)
        if len(blocks) == 1:
            return blocks[0], negative, None
        weights = ownership(plan.masks)
        latent = self._latent_size
        weights = F.interpolate(weights[:, None], size=latent, mode="area")[:, 0]
        region_plan = RegionPlan(weights.to(self._execution_device), blocks[0].embeds.shape[1])
        return (TextCondition.cat(blocks, dim=1),
                TextCondition.cat([negative] * len(blocks), dim=1), region_plan)

    # --- denoising ------------------------------------------------------------------------------

    def _denoise(self, latents: torch.Tensor, start: int, condition: TextCondition,
                 negative: TextCondition, region_plan: RegionPlan | None,
                 keep: Callable[[int, torch.Tensor], torch.Tensor] | None, keep_until: int,
                 trajectory: list[torch.Tensor], callback) -> torch.Tensor:
        """Steps ``start``.. of the schedule from ``latents``; ``keep(i, z)`` (BCG or
        inpainting) applies after steps before ``keep_until``. Appends to ``trajectory``."""
        timesteps = self.scheduler.timesteps
        guided = self.guidance_scale > 1
        text = TextCondition.cat([negative, condition]) if guided else condition
        with regional_attention(self._denoiser, region_plan), \
                self.progress_bar(total=len(timesteps) - start) as progress:
            for i in range(start, len(timesteps)):
                t = timesteps[i]
                if self.interrupt:
                    trajectory.append(latents)
                    continue
                model_input = torch.cat([latents] * 2) if guided else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                noise = predict_noise(self, model_input, t, text)
                if guided:
                    uncond, cond = noise.chunk(2)
                    noise = uncond + self.guidance_scale * (cond - uncond)
                latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
                if keep is not None and i < keep_until:
                    latents = keep(i, latents)
                if callback is not None:
                    latents = callback(self, i, t, {"latents": latents}).pop("latents", latents)
                trajectory.append(latents)
                progress.update()
        return latents

    def _noised_path(self, clean: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        """``clean`` latents noised to every point of the schedule with one ``noise``: the
        trajectory of a given picture (the last point is ``clean`` itself)."""
        timesteps = self.scheduler.timesteps
        path = [self.scheduler.add_noise(clean, noise, timesteps[i:i + 1])
                for i in range(len(timesteps))]
        return [*path, clean.expand_as(noise)]

    @property
    def _latent_size(self) -> tuple[int, int]:
        return self._size[1] // self.vae_scale_factor, self._size[0] // self.vae_scale_factor

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, mask: Any = None,
                 memory: EditMemory | None = None, operation: str | None = None,
                 layer: int | None = None, image: Any = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 20,
                 guidance_scale: float = 7.5, negative_prompt: str | None = None,
                 num_images_per_prompt: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 pooled_prompt_embeds: torch.Tensor | None = None,
                 negative_pooled_prompt_embeds: torch.Tensor | None = None,
                 prompt_attention_mask: torch.Tensor | None = None,
                 negative_prompt_attention_mask: torch.Tensor | None = None,
                 background_consistency: bool = True, multi_query: bool = True,
                 release: float = 0.25, release_band: int | None = 1,
                 remove_from: float = 0.5,
                 output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None
                 ) -> LayeredMemoryOutput | tuple:
        """One session step (module docstring). ``memory``: the session so far (None starts
        one: ``operation`` "background", from ``prompt`` or ``image``); ``operation``:
        "add" (default with a memory; ``prompt`` + ``mask``), "replace" (``layer`` +
        ``prompt``, optional new ``mask``) or "remove" (``layer``); ``layer``: an edit
        number (the first edit is 1). A memory fixes size and step count; ``release``: the
        last fraction of steps without BCG, except beyond ``release_band`` latent pixels
        around the region (None: released everywhere, as the paper); ``remove_from``: the
        fraction of a removal taken from the stored trajectories. Returns
        :class:`LayeredMemoryOutput`."""
        check_output_type(output_type)
        operation = operation or ("background" if memory is None else "add")
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got "
                             f"{operation!r}")
        if (memory is None) != (operation == "background"):
            raise ValueError("a session starts with a background step (no memory) and every "
                             "other operation needs the session's memory")
        if not 0 <= release < 1 or not 0 < remove_from < 1:
            raise ValueError("release must be in [0, 1) and remove_from in (0, 1)")
        given = {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled_prompt_embeds,
                 "prompt_attention_mask": prompt_attention_mask,
                 "negative_prompt_embeds": negative_prompt_embeds,
                 "negative_pooled_prompt_embeds": negative_pooled_prompt_embeds,
                 "negative_prompt_attention_mask": negative_prompt_attention_mask}
        device = self._execution_device
        self._guidance_scale = guidance_scale
        self._interrupt = False
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = [int(t) for t in self.scheduler.timesteps]
        self._num_timesteps = len(timesteps)
        if memory is not None:
            self._size = tuple(memory.settings["size"])
            if memory.settings["timesteps"] != timesteps:
                raise ValueError(f"this session was made with {memory.settings['steps']} "
                                 f"steps of its scheduler; continue it with the same")
        else:
            default = self.vae_scale_factor * self._denoiser.config.sample_size
            if image is not None:
                image = as_rgba_array(image, what="background image")
                if height is None and width is None:
                    height, width = image.shape[:2]
            self._size = (int(width or default), int(height or default))
        step_size = self.vae_scale_factor * (2 if kind_of(self) == "pixart" else 1)
        if any(side % step_size for side in self._size):
            raise ValueError(f"height and width must be multiples of {step_size}, got "
                             f"{self._size[1]}x{self._size[0]}")

        if operation == "remove":
            if prompt is not None or prompt_embeds is not None:
                raise ValueError("remove takes no prompt")
            condition = None
            negative = encode_text(self, [negative_prompt or ""], zeros_for_empty=True)
            batch = num_images_per_prompt
        else:
            condition, negative = self._conditions(prompt, negative_prompt, given)
            condition = condition.repeat(num_images_per_prompt)
            negative = negative.repeat(num_images_per_prompt)
            batch = condition.embeds.shape[0]
        edit_mask = None if mask is None else self._mask(mask, self._size)
        if operation == "add" and edit_mask is None:
            raise ValueError("add needs a mask: where the new object goes")
        dtype = self._denoiser.dtype
        shape = (batch, self._denoiser.config.in_channels, *self._latent_size)
        noise = latents.to(device, dtype) if latents is not None else \
            randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        noise = noise * self.scheduler.init_noise_sigma
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs can only name "
                             f"{self._callback_tensor_inputs}, got {sorted(unknown)}")
        trajectory: list[torch.Tensor] = []
        source = None  # a given background picture
        release_at = len(timesteps) - round(release * len(timesteps))

        if operation == "background":
            plan = _Plan(None, [], [])
            if image is not None:
                source = self._picture(image, self._size)
                path = self._noised_path(self._encode(source).to(dtype), noise)
                trajectory.extend(path)
                final = path[-1]
            else:
                trajectory.append(noise)
                final = self._denoise(noise, 0, condition, negative, None, None, 0,
                                      trajectory, callback_on_step_end)
        else:
            plan = self._plan(operation, memory, edit_mask, layer, condition)
            final = self._edit(operation, memory, plan, condition, negative, noise, batch,
                               background_consistency, multi_query, release_at,
                               release_band, remove_from,
                               trajectory, callback_on_step_end, generator)
        self.maybe_free_model_hooks()
        if output_type == "latent":
            result = LayeredMemoryOutput(images=final, layers=[], memories=[])
            return result if return_dict else (result.images, result.layers, result.memories)
        pictures = self.decode_latents(final)
        memories = self._memories(operation, memory, plan, prompt, condition, edit_mask,
                                  torch.stack(trajectory), pictures, source,
                                  num_images_per_prompt, timesteps, guidance_scale)
        stacks = [memory_stack(one, {"prompt": one.latest.prompt}) for one in memories]
        result = LayeredMemoryOutput(images=pictures_as(pictures, output_type), layers=stacks,
                                     memories=memories)
        return result if return_dict else (result.images, result.layers, result.memories)

    def _edit(self, operation: str, memory: EditMemory, plan: _Plan,
              condition: TextCondition | None, negative: TextCondition, noise: torch.Tensor,
              batch: int, background_consistency: bool, multi_query: bool, release_at: int,
              release_band: int | None, remove_from: float, trajectory: list[torch.Tensor],
              callback, generator) -> torch.Tensor:
        """An add, replace or remove on ``memory``: the final latents (``trajectory``
        filled)."""
        device, dtype = noise.device, noise.dtype
        steps = len(self.scheduler.timesteps)
        latest = memory.latest.trajectory.to(device, dtype)
        if multi_query:
            text, negative, region_plan = self._region_plan(plan, batch, negative)
        else:  # the edit's own prompt everywhere (a removal: the background's)
            text = condition if condition is not None else memory.steps[0].condition
            text, region_plan = text.to(device, dtype).repeat(
                batch // text.embeds.shape[0]), None
        inside = self._latent_mask(plan.region, noise)
        if background_consistency:
            released = inside if release_band is None else F.max_pool2d(
                inside, 2 * release_band + 1, stride=1, padding=release_band)

            def keep(i: int, z: torch.Tensor) -> torch.Tensor:
                free = inside if i < release_at else released
                return (1 - free) * latest[i + 1] + free * z
            keep_until = release_at if release_band is None else steps
        else:  # plain masked inpainting: the previous picture, re-encoded, noised afresh
            fresh = randn_tensor(noise.shape, generator=generator, device=device, dtype=dtype)
            path = self._noised_path(self._encode(memory.latest.image).to(dtype), fresh)

            def keep(i: int, z: torch.Tensor) -> torch.Tensor:
                return (1 - inside) * path[i + 1] + inside * z
            keep_until = steps
        start = 0
        if operation == "remove" and background_consistency:
            before = memory.before(plan.layer).trajectory.to(device, dtype)
            start = round(remove_from * steps)
            trajectory.extend((inside * before[i] + (1 - inside) * latest[i]).expand_as(noise)
                              for i in range(start + 1))
            latents = trajectory[-1]
        else:
            latents = (1 - inside) * latest[0] + inside * noise if background_consistency \
                else noise
            trajectory.append(latents)
        return self._denoise(latents, start, text, negative, region_plan, keep, keep_until,
                             trajectory, callback)

    def _memories(self, operation: str, memory: EditMemory | None, plan: _Plan,
                  prompt: str | list[str] | None, condition: TextCondition | None,
                  edit_mask: torch.Tensor | None, trajectory: torch.Tensor,
                  pictures: np.ndarray, source: np.ndarray | None, per: int,
                  timesteps: list[int], guidance: float) -> list[EditMemory]:
        """Each batch row's new memory: ``memory`` with this call's step applied."""
        batch = trajectory.shape[1]
        prompts = [""] * batch if prompt is None or operation == "remove" else \
            [one for one in ([prompt] if isinstance(prompt, str) else prompt)
             for _ in range(per)]
        images = np.rint(pictures * 255).clip(0, 255).astype(np.uint8)
        settings = {"size": list(self._size), "steps": len(timesteps), "timesteps": timesteps,
                    "guidance": guidance}
        made = []
        for row in range(batch):
            step = MemoryStep(
                operation, prompts[row], trajectory[:, row].cpu(), images[row],
                None if condition is None else condition.map(
                    lambda t, row=row: t[row:row + 1].cpu()),
                edit_mask, None if plan.region is None else plan.region.cpu(), plan.layer,
                source)
            made.append(EditMemory([step], settings) if memory is None
                        else memory.with_step(step))
        return made
