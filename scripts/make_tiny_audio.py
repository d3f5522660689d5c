#!/usr/bin/env python3
"""Build a tiny, real (randomly initialised) Whisper speech-to-text model for mlx-audio.

Usage:
    python scripts/make_tiny_audio.py OUT_DIR [--seed N]

The result converts/quantizes offline with

    from mlx_audio.convert import convert
    convert(OUT_DIR, DEST, quantize=True, q_bits=4, q_group_size=64, model_domain="stt")

and loads and transcribes (noise: the weights are random) with

    from mlx_audio.stt.utils import load_model
    load_model(Path(DEST)).generate("speech.wav").text

mlx-audio builds its ``WhisperProcessor`` from the tokenizer and feature-extractor files
written here (without them, ``generate`` raises ``ValueError: Processor not found``).

Pass ``model_domain="stt"`` (CLI: ``--model-domain stt``): without it mlx-audio 0.6.2
auto-detects the domain by importing every model module, and two TTS modules
(``tts/models/llama``, ``tts/models/qwen3``) download the SNAC codec from the hub at import
time, which fails offline.

Architecture: ``model_type: whisper`` in mlx-audio's own (MLX) config layout: 80 mel bins,
1 encoder + 1 decoder layer, width 64, 2 heads, vocab 512, 1500 audio positions (Whisper's
30-second window: transcription pads every input to it) and 32 text positions.
Every Linear input dim is 64 or 256, so all of them are quantizable with group 32 or 64
(mlx-audio quantizes only layers whose input dim is a multiple of 64). About 360 KB of
float16 weights.

The tokenizer is English-only Whisper-style: a byte-level BPE trained on TRAINING_TEXT (ids
0-451), then ``<|endoftext|>`` (451 + 1 = eot), the task/control tokens and 51 timestamp
tokens ``<|0.00|>`` ... ``<|1.00|>`` last, so text ids < eot < timestamps as Whisper's decoder
expects.

Files written: config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
special_tokens_map.json, preprocessor_config.json (WhisperFeatureExtractor), README.md.
Needs: mlx (mlx[cpu] on Linux), mlx-audio, tokenizers. No torch, no network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SEED = 0
VOCAB_SIZE = 512
EOT = "<|endoftext|>"
CONTROL_TOKENS = [
    EOT,
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
TIMESTAMP_TOKENS = [f"<|{i * 0.02:.2f}|>" for i in range(51)]
TEXT_VOCAB = VOCAB_SIZE - len(CONTROL_TOKENS) - len(TIMESTAMP_TOKENS)

CONFIG = {
    "model_type": "whisper",
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 64,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": VOCAB_SIZE,
    "n_text_ctx": 32,
    "n_text_state": 64,
    "n_text_head": 2,
    "n_text_layer": 1,
}


FEATURE_EXTRACTOR = {
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": CONFIG["n_mels"],
    "sampling_rate": 16000,
    "hop_length": 160,
    "chunk_length": 30,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "processor_class": "WhisperProcessor",
}

TOKENIZER_CONFIG = {
    "tokenizer_class": "WhisperTokenizer",
    "processor_class": "WhisperProcessor",
    "bos_token": EOT,
    "eos_token": EOT,
    "unk_token": EOT,
    "pad_token": EOT,
    "model_max_length": CONFIG["n_text_ctx"],
    "clean_up_tokenization_spaces": False,
}

TRAINING_TEXT = """\
the cat sat on the mat and the dog ran in the park while the birds sang in the trees.
speech to text turns sound into words; the model listens to a short clip and writes it down.
a mel spectrogram is a picture of sound, with time along one side and pitch along the other.
hello, hello, can you hear me? yes, I can hear you, loud and clear, thank you very much.
one two three four five six seven eight nine ten, and then we count back down again.
the weather today is cold and wet, with rain in the morning and wind in the afternoon.
please read the numbers slowly: zero, eleven, twenty, thirty, forty, fifty, one hundred.
this tiny model was made for tests, so what it writes is noise and not what was said.
good morning, good evening, good night, see you tomorrow and have a very nice day.
"""


def build_tokenizer():
    """Whisper-style byte-level BPE: text ids first, then control and timestamp tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TEXT_VOCAB,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    if tok.get_vocab_size() != TEXT_VOCAB:
        raise RuntimeError(f"BPE vocab is {tok.get_vocab_size()}, expected {TEXT_VOCAB}")
    specials = CONTROL_TOKENS + TIMESTAMP_TOKENS
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    for i, t in enumerate(specials, start=TEXT_VOCAB):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"special token {t!r} is not at id {i}")
    return tok


def readme(seed: int) -> str:
    seed_arg = "" if seed == DEFAULT_SEED else f" --seed {seed}"
    return f"""\
# Tiny generated Whisper test model (mlx-audio)

A **generated test model**, not a trained one: random weights (seed {seed}). It transcribes
any audio into noise. `model_type: whisper`, 1 encoder + 1 decoder layer, width 64, with an
English-only Whisper-style tokenizer and feature extractor.

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


OUTPUT_FILES = (
    "README.md",
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


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
    _write_json(out / "config.json", CONFIG)
    build_tokenizer().save(str(out / "tokenizer.json"), pretty=True)
    _write_json(out / "tokenizer_config.json", TOKENIZER_CONFIG)
    special = {f"{k}_token": EOT for k in ("bos", "eos", "unk", "pad")}
    _write_json(out / "special_tokens_map.json", special)
    _write_json(out / "preprocessor_config.json", FEATURE_EXTRACTOR)
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
