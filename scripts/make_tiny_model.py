#!/usr/bin/env python3
"""Build a tiny, real (randomly initialised) llama model directory for tests and demos.

Usage:
    python scripts/make_tiny_model.py OUT_DIR [--seed N]

The result loads with ``mlx_lm.load(OUT_DIR)``, generates (gibberish) text, and can be
converted/quantized with ``mlx_lm.convert``. Everything is built offline and
deterministically: running the script twice with the same seed gives byte-identical files.

Files written:
    config.json                   llama config (model_type "llama")
    model.safetensors             float16 weights, random init from mlx_lm.models.llama.Model
    model.safetensors.index.json  weight map, as written by mlx_lm.utils.save_model
    tokenizer.json                byte-level BPE trained on the fixed TRAINING_TEXT below
    tokenizer_config.json         tokenizer class, special tokens and chat template
    special_tokens_map.json       bos/eos/pad for older transformers versions
    README.md                     says what this is and how to regenerate it

The committed demo model in ``manifests/demo-model/`` is produced with the default seed:
    python scripts/make_tiny_model.py manifests/demo-model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SEED = 0

VOCAB_SIZE = 512

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
# Special tokens get the first ids, in this order: <s>=0, </s>=1, <pad>=2, ...
SPECIAL_TOKENS = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, "<|system|>", "<|user|>", "<|assistant|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "use_cache": True,
    "vocab_size": VOCAB_SIZE,
}

# Fixed training text for the tokenizer (original prose, written for this script).
TRAINING_TEXT = """\
hello world. hello there. hello, how are you today? I am fine, thank you.
This is a tiny language model. It was made for tests and it knows nothing at all.
Its weights are random numbers, so the text it writes is noise and not wisdom.
A model is a file of numbers and a small file of settings that says how to read them.
The tokenizer cuts text into pieces, and each piece has a number in the vocabulary.
The model reads the numbers, one after another, and guesses which number comes next.
When the guess is turned back into text we call it generation.
Quantization stores each weight with fewer bits, for example four bits instead of sixteen.
Groups of thirty two or sixty four weights share one scale and one bias.
The smaller file loads faster and uses less memory, but it is a little less exact.
A manifest lists the models a workspace needs, with their sources and their settings.
A lockfile pins every file to a hash so that the same workspace can be built again.
If a hash does not match, the build stops and tells you which file changed.
Build steps run in order: fetch, verify, convert, quantize, and link.
Each step writes its output to a new directory and then moves it into place.
The cache keeps files that were fetched before, so a second build is quick.
You can run the tool offline when every file is already in the cache.
system: You are a helpful assistant. Answer in short sentences.
user: What is the capital of France?
assistant: The capital of France is Paris.
user: Can you count to ten?
assistant: One, two, three, four, five, six, seven, eight, nine, ten.
user: Write a short poem about the sea.
assistant: The sea is wide, the sea is deep, it sings the sailors off to sleep.
user: What day is it today?
assistant: I do not know the date, because I am only a small test model.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 1024 2048 4096.
Words that appear often become single tokens; rare words stay split into bytes.
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
Rain falls on the green hills, the river runs down to the town, and the bells ring.
Please keep your answers kind, clear and correct, and say so when you are not sure.
Good morning! Good evening! Good night! See you tomorrow, and have a nice day.
Python, Rust, Swift and C are programming languages; MLX runs on Apple silicon.
Open the file, read the header, check the shape of each tensor, and close the file.
Tests should be small, fast and repeatable, so this model has only two layers.
"""


def _set_cpu() -> None:
    import mlx.core as mx

    # Always initialise on the CPU so the random weights do not depend on the device.
    mx.set_default_device(mx.cpu)


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
    bos_id = tok.token_to_id(BOS_TOKEN)
    # Prepend <s> like llama tokenizers do; mlx_lm skips it when the prompt already has it.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
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
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": BOS_TOKEN,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "extra_special_tokens": [],
        "model_max_length": CONFIG["max_position_embeddings"],
        "pad_token": PAD_TOKEN,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def readme(seed: int) -> str:
    seed_arg = "" if seed == DEFAULT_SEED else f" --seed {seed}"
    c = CONFIG
    return f"""\
# Tiny generated llama test model

This directory is a **generated test model**, not a trained one. Its weights are random
(seed {seed}), so it only produces gibberish. It exists so that tests and demos can load,
generate from, convert and quantize a real `model_type: llama` checkpoint offline with
`mlx-lm`, in well under a second.

- {c["num_hidden_layers"]} layers, hidden size {c["hidden_size"]}, \
{c["num_attention_heads"]} heads ({c["num_key_value_heads"]} kv heads), \
intermediate size {c["intermediate_size"]}, vocab {c["vocab_size"]}, \
untied lm_head, float16 weights
- byte-level BPE tokenizer trained on a fixed text, with a simple chat template

Regenerate it (byte-identical output) from the repository root with:

```bash
python scripts/make_tiny_model.py <out-dir>{seed_arg}
```

The copy shipped in the mlxk repository is `manifests/demo-model/` (default seed). The
script needs `mlx`, `mlx-lm` and `tokenizers`; the random weights come from mlx's
initialisers on the CPU, so a different mlx version may change the bytes.

Use it with:

```python
from mlx_lm import load, generate

model, tokenizer = load("<out-dir>")
print(generate(model, tokenizer, prompt="hello", max_tokens=8))
```
"""


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


OUTPUT_FILES = (
    "README.md",
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def build(out_dir: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Write the tiny model into ``out_dir`` and return its path.

    ``out_dir`` may exist, but must not contain files other than OUTPUT_FILES.
    """
    import mlx.core as mx
    from mlx_lm.models.llama import Model, ModelArgs
    from mlx_lm.utils import save_model

    out = Path(out_dir)
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if extra:
            raise FileExistsError(f"{out} contains unexpected files: {', '.join(extra)}")
    out.mkdir(parents=True, exist_ok=True)

    _set_cpu()
    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(CONFIG))
    model.set_dtype(mx.float16)
    mx.eval(model.parameters())
    # Writes model.safetensors (metadata {"format": "mlx"}) and model.safetensors.index.json.
    save_model(out, model)

    _write_json(out / "config.json", CONFIG)

    tok = build_tokenizer()
    tok.save(str(out / "tokenizer.json"), pretty=True)
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    _write_json(
        out / "special_tokens_map.json",
        {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN},
    )
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
