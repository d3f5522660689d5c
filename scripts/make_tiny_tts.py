#!/usr/bin/env python3
"""Build a tiny Orpheus-style text-to-speech model (mlx-audio's qwen3 TTS, as used by
VyvoTTS) and the tiny SNAC codec that mlx-audio downloads for it at run time.

Usage:
    python scripts/make_tiny_tts.py OUT_DIR [--seed N]

Writes two repo directories:

    OUT_DIR/model/       the TTS model (``model_type: qwen3``, mlx-audio ``tts/models/qwen3``)
    OUT_DIR/snac_24khz/  a tiny SNAC codec, to serve as ``mlx-community/snac_24khz``

Why this model: mlx-audio 0.6.2's ``mlx_audio/tts/models/qwen3/qwen3.py`` (and
``tts/models/llama/llama.py``) run ``SNAC.from_pretrained("mlx-community/snac_24khz")`` when
the module is imported: ``snapshot_download`` by repo id, no revision (so ``main``),
``allow_patterns=["*.safetensors", "*.json"]``; it then reads ``config.json`` and
``model.safetensors``. So loading this model, unmodified, fetches a second repo; offline and
uncached, the import fails. (The llama/Orpheus variant also loads its tokenizer by repo id,
``mlx-community/orpheus-3b-0.1-ft-bf16``; the qwen3 one reads it from the model directory.)

The model is real mlx-audio code, built with ``mlx_audio.lm.models.qwen3.Model`` (the class the
TTS ``Model`` extends; importing the TTS module itself would need the codec). Its weights are
random (seed), except that it is wired to *speak*: every attention and MLP output projection
is zero, so the residual stream is the current token's embedding, and the embeddings and
lm_head rows of a short chain of tokens make it emit, after the prompt's end-of-human token,
start-of-speech, two 7-code SNAC frames and end-of-speech. mlx-audio then decodes the 14 codes
with SNAC into 4096 samples at 24 kHz, whatever the text. The chain's directions are vertices
of the 24-cell (4 dimensions, pairwise cosine <= 0.5), so the right token wins by a wide logit
margin under the default sampler (temperature 0.6, top-p 0.8, repetition penalty 1.3).

Sizes: vocab 180352 (151679 text/control ids + 7 x 4096 code ids), hidden 4, one layer,
untied lm_head, float16: about 2.9 MB. The SNAC has the 24 kHz layout (hop 512, vq_strides
4/2/1, 4096-entry codebooks) with tiny widths: about 0.7 MB. The tokenizer is the byte-level
BPE of ``scripts/make_tiny_model.py`` (ids < 512).

Needs: mlx (mlx[cpu] on Linux), mlx-audio, tokenizers. No torch, no network. Deterministic:
two runs with the same seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
from pathlib import Path

DEFAULT_SEED = 0
SNAC_REPO = "mlx-community/snac_24khz"  # hard-coded in mlx_audio/tts/models/qwen3/qwen3.py

# The token layout of mlx_audio/tts/models/qwen3/qwen3.py (VyvoTTS).
START_OF_SPEECH, END_OF_SPEECH, END_OF_HUMAN = 151670, 151671, 151673
CODE_OFFSET, CODEBOOK = 151679, 4096
VOCAB_SIZE = CODE_OFFSET + 7 * CODEBOOK + 1  # 180352
FRAMES = 2
LOGIT_SCALE = 20.0

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 4,
    "num_hidden_layers": 1,
    "intermediate_size": 8,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "rms_norm_eps": 1e-05,
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": 2048,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": END_OF_SPEECH,
    "torch_dtype": "float16",
    "sample_rate": 24000,
}

SNAC_CONFIG = {
    "sampling_rate": 24000,
    "encoder_dim": 4,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 16,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": CODEBOOK,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}

MODEL_FILES = (
    "README.md",
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
SNAC_FILES = ("README.md", "config.json", "model.safetensors")


def _tiny_model_script():
    """scripts/make_tiny_model.py, for its deterministic tokenizer (ids < 512)."""
    path = Path(__file__).resolve().parent / "make_tiny_model.py"
    spec = importlib.util.spec_from_file_location("make_tiny_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech_chain() -> list[int]:
    """The tokens the model emits after the prompt: SOS, FRAMES x 7 codes, EOS."""
    codes = [
        CODE_OFFSET + k * CODEBOOK + (37 * (7 * f + k) + 11) % CODEBOOK
        for f in range(FRAMES)
        for k in range(7)
    ]
    return [END_OF_HUMAN, START_OF_SPEECH, *codes, END_OF_SPEECH]


def directions(n: int) -> list[list[float]]:
    """n vertices of the 24-cell: unit vectors in 4-D, pairwise cosine <= 0.5."""
    s = 2**-0.5
    out = []
    for i, j in itertools.combinations(range(4), 2):
        for a, b in itertools.product((s, -s), repeat=2):
            v = [0.0] * 4
            v[i], v[j] = a, b
            out.append(v)
    if n > len(out):
        raise ValueError(f"need {n} directions, the 24-cell has {len(out)}")
    return out[:n]


def wire_to_speak(weights: dict) -> dict:
    """Zero the output projections; point each chain token's embedding at its successor."""
    import mlx.core as mx

    chain = speech_chain()
    dirs = directions(len(chain) - 1)
    weights = dict(weights)
    for name in weights:
        if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])
    embed = weights["model.embed_tokens.weight"]
    head = mx.zeros_like(weights["lm_head.weight"])
    for token, successor, d in zip(chain, chain[1:], dirs, strict=False):
        embed[token] = mx.array(d, dtype=embed.dtype)
        head[successor] = mx.array([LOGIT_SCALE * x for x in d], dtype=head.dtype)
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = head
    return weights


def _check_dir(out: Path, allowed: tuple[str, ...]) -> None:
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in allowed)
        if extra:
            raise FileExistsError(f"{out} contains unexpected files: {', '.join(extra)}")
    out.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _save(path: Path, weights: dict) -> None:
    import mlx.core as mx

    weights = dict(sorted(weights.items()))
    mx.eval(weights)
    mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})


def build_model(out: Path, seed: int) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.lm.models.qwen3 import Model, ModelArgs

    _check_dir(out, MODEL_FILES)
    mx.set_default_device(mx.cpu)
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(CONFIG))
    model.set_dtype(mx.float16)
    _save(out / "model.safetensors", wire_to_speak(dict(tree_flatten(model.parameters()))))
    _write_json(out / "config.json", CONFIG)
    tiny = _tiny_model_script()
    tiny.build_tokenizer().save(str(out / "tokenizer.json"), pretty=True)
    _write_json(out / "tokenizer_config.json", tiny.tokenizer_config())
    special = {"bos_token": tiny.BOS_TOKEN, "eos_token": tiny.EOS_TOKEN}
    _write_json(out / "special_tokens_map.json", {**special, "pad_token": tiny.PAD_TOKEN})
    (out / "README.md").write_text(model_readme(seed), encoding="utf-8")
    return out


def build_snac(out: Path, seed: int) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.codec.models.snac import SNAC

    _check_dir(out, SNAC_FILES)
    mx.set_default_device(mx.cpu)
    mx.random.seed(seed)
    snac = SNAC(**SNAC_CONFIG)
    _save(out / "model.safetensors", dict(tree_flatten(snac.parameters())))
    _write_json(out / "config.json", SNAC_CONFIG)
    (out / "README.md").write_text(snac_readme(seed), encoding="utf-8")
    return out


def build(out_dir: str | Path, seed: int = DEFAULT_SEED) -> tuple[Path, Path]:
    """Write OUT_DIR/model and OUT_DIR/snac_24khz; return both paths."""
    out = Path(out_dir)
    return build_model(out / "model", seed), build_snac(out / "snac_24khz", seed)


def model_readme(seed: int) -> str:
    return f"""\
# Tiny generated Orpheus-style TTS test model (mlx-audio)

A **generated test model**, not a trained one (seed {seed}). `model_type: qwen3`, loaded by
mlx-audio's `tts/models/qwen3`. Wired to say the same two SNAC frames whatever the text.
Loading it downloads `{SNAC_REPO}` by repo id (when mlx-audio imports the model module).
Regenerate with `python scripts/make_tiny_tts.py <out-dir>`.
"""


def snac_readme(seed: int) -> str:
    return f"""\
# Tiny generated SNAC codec (mlx-audio), served as {SNAC_REPO} in tests

Random weights (seed {seed}), the 24 kHz layout with tiny widths. Built with
`mlx_audio.codec.models.snac.SNAC`. Regenerate with `python scripts/make_tiny_tts.py <out-dir>`.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write model/ and snac_24khz/ into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="weight init seed")
    args = parser.parse_args(argv)
    try:
        dirs = build(args.out_dir, seed=args.seed)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for d in dirs:
        print(f"wrote {d} ({sum(p.stat().st_size for p in d.iterdir())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
