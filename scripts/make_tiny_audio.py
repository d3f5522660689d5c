#!/usr/bin/env python3
"""Build a tiny, real (randomly initialised) Whisper speech-to-text model for mlx-audio.

Usage:
    python scripts/make_tiny_audio.py OUT_DIR [--seed N]

The result converts/quantizes offline with

    from mlx_audio.convert import convert
    convert(OUT_DIR, DEST, quantize=True, q_bits=4, q_group_size=64, model_domain="stt")

and loads with ``mlx_audio.stt.utils.load_model(DEST)`` (a warning says no WhisperProcessor
could be loaded: no tokenizer / feature-extractor files are written, since the random model
cannot transcribe anyway and conversion does not read them).

Pass ``model_domain="stt"`` (CLI: ``--model-domain stt``): without it mlx-audio 0.6.2
auto-detects the domain by importing every model module, and two TTS modules
(``tts/models/llama``, ``tts/models/qwen3``) download the SNAC codec from the hub at import
time, which fails offline.

Architecture: ``model_type: whisper`` in mlx-audio's own (MLX) config layout: 80 mel bins,
1 encoder + 1 decoder layer, width 64, 2 heads, vocab 256, 32 audio/text positions.
Every Linear input dim is 64 or 256, so all of them are quantizable with group 32 or 64
(mlx-audio quantizes only layers whose input dim is a multiple of 64). About 330 KB of
float16 weights.

Files written: config.json, model.safetensors, README.md.
Needs: mlx (mlx[cpu] on Linux), mlx-audio. No torch, no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SEED = 0

CONFIG = {
    "model_type": "whisper",
    "n_mels": 80,
    "n_audio_ctx": 32,
    "n_audio_state": 64,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": 256,
    "n_text_ctx": 32,
    "n_text_state": 64,
    "n_text_head": 2,
    "n_text_layer": 1,
}


def readme(seed: int) -> str:
    seed_arg = "" if seed == DEFAULT_SEED else f" --seed {seed}"
    return f"""\
# Tiny generated Whisper test model (mlx-audio)

A **generated test model**, not a trained one: random weights (seed {seed}). It cannot
transcribe anything. `model_type: whisper`, 1 encoder + 1 decoder layer, width 64.

Regenerate (byte-identical for the same mlx version) with:

```bash
python scripts/make_tiny_audio.py <out-dir>{seed_arg}
```

Convert / quantize offline:

```python
from mlx_audio.convert import convert
convert("<out-dir>", "<dest>", quantize=True, q_bits=4, q_group_size=64, model_domain="stt")
```
"""


OUTPUT_FILES = ("README.md", "config.json", "model.safetensors")


def build(out_dir: str | Path, seed: int = DEFAULT_SEED) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.stt.models.whisper import Model, ModelConfig

    out = Path(out_dir)
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if extra:
            raise FileExistsError(f"{out} contains unexpected files: {', '.join(extra)}")
    out.mkdir(parents=True, exist_ok=True)

    mx.set_default_device(mx.cpu)
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict(CONFIG), dtype=mx.float16)
    model.set_dtype(mx.float16)
    weights = dict(sorted(tree_flatten(model.parameters())))
    mx.eval(weights)
    # Keys and conv layouts are mlx-audio's own; Model.sanitize leaves them unchanged
    # because there is no "model." (Hugging Face) prefix.
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n", encoding="utf-8")
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
