"""Tiny Stable Diffusion pipelines with random weights, built in code for the image tests.

No package ships diffusion weights, so the tests build one: a UNet with two blocks of
4 and 8 channels, a two-block VAE, a 2-layer CLIP text encoder of width 32 and a CLIP
tokenizer over a small hand-written vocabulary (every merge's result is in the
vocabulary, as transformers 5 requires). Saved with ``save_pretrained`` it is a real
diffusers folder of about 300 KB that ``AutoPipelineForText2Image`` loads; its own
image size is 32x32 (sample size 16, VAE scale factor 2). ``in_channels=9`` gives an
inpainting UNet (latents, mask and masked image), saved as an inpainting pipeline.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_MERGES = (("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>"))


def _write_tokenizer(folder: Path) -> None:
    """vocab.json and merges.txt of a tiny CLIP BPE tokenizer, in ``folder``."""
    tokens = list(_SPECIAL)
    for char in string.ascii_lowercase + string.digits + ".,!?'-":
        tokens += [char, char + "</w>"]
    tokens += ["".join(pair) for pair in _MERGES]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    merges = "\n".join(" ".join(pair) for pair in _MERGES)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges + "\n")


def build_tiny_sd(folder: Path, in_channels: int = 4, seed: int = 0) -> str:
    """Save a tiny random Stable Diffusion pipeline in ``folder``; returns its path."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline,
                           StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(4, 8), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=2, sample_size=32)
    _write_tokenizer(folder / "_tokenizer_src")
    tokenizer = CLIPTokenizer(str(folder / "_tokenizer_src" / "vocab.json"),
                              str(folder / "_tokenizer_src" / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
               scheduler=scheduler, safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    shutil.rmtree(folder / "_tokenizer_src")
    return str(folder)


def png(width: int, height: int, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    """A plain PNG of one color, for uploads."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_size(data: bytes):
    """``(width, height)`` of PNG bytes (and a check that they are a PNG)."""
    import io

    from PIL import Image

    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG"
    return picture.size
