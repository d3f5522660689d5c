"""What mlxk knows about model directories, in one place: which kind a model is (from its
config.json), which files are a tokenizer, and which quantization modes fix their group size
and bits. health, convert and run all ask here.
"""

from __future__ import annotations

from pathlib import Path

# Quantization modes with a fixed (group_size, bits), as mlx defines them; affine's default
# group size is 64.
FIXED_MODES = {"mxfp4": (32, 4), "nvfp4": (16, 4), "mxfp8": (32, 8)}
DEFAULT_GROUP_SIZE = 64

# Any one of these is a tokenizer (vocab.json counts only with merges.txt).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tekken.json",
    "vocab.txt",
)

# Keys of config.json that make a model a vision-language model (besides vision_config).
VISION_KEYS = ("image_token_index", "image_token_id", "vision_tower")
# Audio model types by mlx-audio domain, used when mlx-audio is not installed to tell the user
# which extra to add (when it is installed, its own models/ folders are the source of truth).
AUDIO_TYPES = {
    "stt": {"whisper", "parakeet", "voxtral", "wav2vec2", "canary", "granite_speech"},
    "tts": {
        "kokoro",
        "sesame",
        "csm",
        "bark",
        "spark",
        "outetts",
        "dia",
        "orpheus",
        "vibevoice",
        "llama_tts",
    },
    "sts": {"mimi"},
    "codec": {"encodec", "snac", "dac"},
}
AUDIO_DOMAINS = ("stt", "tts", "sts", "lid", "music")
EMBEDDING_TYPES = frozenset(
    {
        "bert",
        "roberta",
        "xlm-roberta",
        "xlm_roberta",
        "distilbert",
        "mpnet",
        "nomic_bert",
        "modernbert",
    }
)


# mlx-audio TTS models that are plain language models speaking SNAC codes (the Orpheus layout):
# model_type → the id of the first audio code (mlx_audio/tts/models/{llama,qwen3}). Seven
# 4096-entry code ranges follow it, so such a model's vocabulary reaches past them; a text
# LLM of the same family does not. (Hard-coded: importing those modules downloads the codec.)
SNAC_CODE_OFFSETS = {"llama": 128266, "qwen3": 151679}
SNAC_CODES = 7 * 4096


def speaks_snac(config: dict) -> bool:
    """A llama/qwen3 whose vocabulary holds the SNAC code ranges: an mlx-audio text-to-speech
    model (Orpheus, VyvoTTS) that converts as the language model it is."""
    offset = SNAC_CODE_OFFSETS.get(model_type(config))
    vocab = config.get("vocab_size") or 0
    return offset is not None and isinstance(vocab, int) and vocab >= offset + SNAC_CODES


def group_size(mode: str, given: int | None) -> int:
    return given if given is not None else FIXED_MODES.get(mode, (DEFAULT_GROUP_SIZE,))[0]


def has_tokenizer(names) -> bool:
    names = set(names)
    return any(n in names for n in TOKENIZER_FILES) or {"vocab.json", "merges.txt"} <= names


def model_type(config: dict) -> str:
    value = config.get("model_type")
    return str(value).lower() if value else ""


def is_vision(config: dict) -> bool:
    return bool(config.get("vision_config")) or any(config.get(k) is not None for k in VISION_KEYS)


def package_dir(module: str) -> Path | None:
    """Where a package is installed, found without importing it."""
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def has_model(package: str, subdir: str, name: str) -> bool:
    """Whether an installed package implements a model type (its models/<name> exists)."""
    root = package_dir(package)
    return bool(root and name and (root / subdir / name).exists())


def audio_domain(mtype: str) -> str | None:
    """The mlx-audio domain (stt, tts, …) that implements a model type, if any."""
    for domain in AUDIO_DOMAINS:
        if has_model("mlx_audio", f"{domain}/models", mtype):
            return domain
    return next((d for d, types in AUDIO_TYPES.items() if mtype in types), None)


def model_kind(config: dict | None) -> str | None:
    """What a model is, from its config.json: "vision", "audio", "embedding", "chat" or None."""
    if not isinstance(config, dict):
        return None
    mtype = model_type(config)
    if is_vision(config):
        return "vision"
    all_audio = frozenset().union(*AUDIO_TYPES.values())
    if config.get("audio_config") or mtype in all_audio or speaks_snac(config):
        return "audio"
    archs = config.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    if not any(a.endswith("ForCausalLM") for a in archs) and (
        mtype in EMBEDDING_TYPES or any(a.endswith(("Model", "ForMaskedLM")) for a in archs)
    ):
        return "embedding"
    return "chat" if mtype else None
