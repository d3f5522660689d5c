#!/usr/bin/env python3
"""Build a tiny, real (randomly initialised) LLaVA vision-language model for mlx-vlm.

Usage:
    python scripts/make_tiny_vlm.py OUT_DIR [--seed N]

The result loads with ``mlx_vlm.load(OUT_DIR)`` and converts/quantizes offline with
``mlx_vlm.convert.convert(OUT_DIR, DEST, quantize=True, q_bits=4, q_group_size=64)``.
Everything is built offline and deterministically (fixed seed, CPU init).

Architecture: ``model_type: llava`` = CLIP vision tower (2 layers, hidden 64, 28x28 images,
14x14 patches -> 4 image tokens) + 2-layer projector + llama text model (2 layers,
hidden 64, vocab 512). About 510 KB of float16 weights, 545 KB in all.

Files written:
    config.json                   llava config (text_config llama, vision_config clip_vision_model)
    model.safetensors             float16 weights, from mlx_vlm.models.llava.Model
    model.safetensors.index.json  weight map
    tokenizer.json                byte-level BPE trained on TRAINING_TEXT, <image> special token
    tokenizer_config.json         PreTrainedTokenizerFast + special tokens + chat template
    special_tokens_map.json
    preprocessor_config.json      CLIPImageProcessor, 28x28 (hand-written; no hub download)
    processor_config.json         LlavaProcessor (patch_size, image token, strategy)
    chat_template.json            llava-style chat template with an image placeholder
    README.md

Needs: mlx (mlx[cpu] on Linux), mlx-vlm, tokenizers. No torch, no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SEED = 0
VOCAB_SIZE = 512
IMAGE_SIZE = 28
PATCH_SIZE = 14

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN, "<|user|>", "<|assistant|>"]
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index(IMAGE_TOKEN)

# Messages may have string content or a list of {"type": "text"|"image"} parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

TEXT_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05,
    "vocab_size": VOCAB_SIZE,
    "rope_theta": 10000.0,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}

VISION_CONFIG = {
    "model_type": "clip_vision_model",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
    "projection_dim": 64,
    "num_channels": 3,
    "layer_norm_eps": 1e-05,
}

CONFIG = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "ignore_index": -100,
    "image_token_index": IMAGE_TOKEN_ID,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
    "torch_dtype": "float16",
    "text_config": TEXT_CONFIG,
    "vision_config": VISION_CONFIG,
}

# CLIP's normalisation constants; the processor resizes/crops to IMAGE_SIZE.
PREPROCESSOR_CONFIG = {
    "image_processor_type": "CLIPImageProcessor",
    "processor_class": "LlavaProcessor",
    "do_resize": True,
    "size": {"shortest_edge": IMAGE_SIZE},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}

PROCESSOR_CONFIG = {
    "processor_class": "LlavaProcessor",
    "image_token": IMAGE_TOKEN,
    "num_additional_image_tokens": 1,
    "patch_size": PATCH_SIZE,
    "vision_feature_select_strategy": "default",
}

TRAINING_TEXT = """\
hello world. hello there. hello, how are you today? I am fine, thank you.
This is a tiny vision language model. It was made for tests and it knows nothing at all.
It looks at a picture, turns it into a few vectors, and puts them before the text.
Describe this image. What is in the picture? What colour is the square?
The image shows a red square on a white background next to a small blue circle.
There is a cat on a mat, a dog in the park, and a bird in the tree.
Its weights are random numbers, so the text it writes is noise and not wisdom.
A model is a file of numbers and a small file of settings that says how to read them.
The tokenizer cuts text into pieces, and each piece has a number in the vocabulary.
Quantization stores each weight with fewer bits, for example four bits instead of sixteen.
Groups of thirty two or sixty four weights share one scale and one bias.
The vision tower is kept in full precision; the language model is quantized.
user: What do you see? assistant: I see a picture with shapes and colours.
user: How many apples are there? assistant: There are three green apples on a plate.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 14 16 28 32 64 100 128 256 512 1024.
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
Rain falls on the green hills, the river runs down to the town, and the bells ring.
Open the file, read the header, check the shape of each tensor, and close the file.
Tests should be small, fast and repeatable, so this model has only two layers.
Good morning! Good evening! Good night! See you tomorrow, and have a nice day.
Pixels, patches, layers, heads, tokens, vectors, images, pictures, photos, frames.
"""


def build_tokenizer():
    """Train a byte-level BPE tokenizer on TRAINING_TEXT (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != VOCAB_SIZE:
        raise RuntimeError(
            f"tokenizer vocab is {size}, expected {VOCAB_SIZE}; extend TRAINING_TEXT"
        )
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"special token {t!r} is not at id {i}")
    return tok


def tokenizer_config() -> dict:
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    return {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": BOS_TOKEN,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "extra_special_tokens": [],
        "model_max_length": TEXT_CONFIG["max_position_embeddings"],
        "pad_token": PAD_TOKEN,
        "processor_class": "LlavaProcessor",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def readme(seed: int) -> str:
    seed_arg = "" if seed == DEFAULT_SEED else f" --seed {seed}"
    return f"""\
# Tiny generated LLaVA test model (mlx-vlm)

A **generated test model**, not a trained one: random weights (seed {seed}), so it only
produces gibberish. `model_type: llava` with a 2-layer CLIP vision tower (28x28 images,
14x14 patches) and a 2-layer llama text model (hidden 64, vocab {VOCAB_SIZE}).

Regenerate (byte-identical for the same mlx version) with:

```bash
python scripts/make_tiny_vlm.py <out-dir>{seed_arg}
```

Convert / quantize offline:

```python
from mlx_vlm.convert import convert
convert("<out-dir>", "<dest>", quantize=True, q_bits=4, q_group_size=64)
```
"""


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


OUTPUT_FILES = (
    "README.md",
    "chat_template.json",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "processor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def build(out_dir: str | Path, seed: int = DEFAULT_SEED) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_vlm.models.llava import Model, ModelConfig, TextConfig, VisionConfig

    out = Path(out_dir)
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if extra:
            raise FileExistsError(f"{out} contains unexpected files: {', '.join(extra)}")
    out.mkdir(parents=True, exist_ok=True)

    mx.set_default_device(mx.cpu)
    mx.random.seed(seed)
    # Same construction as mlx_vlm.utils.load_model: nested configs become dataclasses.
    model_config = ModelConfig.from_dict(CONFIG)
    model_config.text_config = TextConfig.from_dict(TEXT_CONFIG)
    model_config.vision_config = VisionConfig.from_dict(VISION_CONFIG)
    model = Model(model_config)
    model.set_dtype(mx.float16)
    weights = dict(sorted(tree_flatten(model.parameters())))
    mx.eval(weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    total_size = sum(v.nbytes for v in weights.values())
    _write_json(
        out / "model.safetensors.index.json",
        {
            "metadata": {"total_size": total_size},
            "weight_map": {k: "model.safetensors" for k in weights},
        },
    )

    _write_json(out / "config.json", CONFIG)
    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"), pretty=True)
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    _write_json(
        out / "special_tokens_map.json",
        {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN},
    )
    _write_json(out / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    _write_json(out / "processor_config.json", PROCESSOR_CONFIG)
    _write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    (out / "README.md").write_text(readme(seed), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write the model into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="weight init seed")
    args = parser.parse_args(argv)
    try:
        out = build(args.out_dir, seed=args.seed)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
