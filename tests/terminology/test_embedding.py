"""The numpy MiniLM encoder: pinned weights, unit vectors, sensible neighbours."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cds.fhir.terminology.embedding import Encoder, ModelUnavailable, model_dir


def test_embeddings_are_unit_length_and_rank_synonyms_first(embedding_mapper) -> None:
    enc = embedding_mapper.encoder
    v = enc.encode(["serum creatinine", "creatinine in serum or plasma", "heart rate", "pulse rate"])
    assert v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]


def test_batching_does_not_change_an_embedding(embedding_mapper) -> None:
    enc = embedding_mapper.encoder
    texts = ["potassium", "lactic acid venous blood", "x"]
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert np.allclose(enc.encode(texts), alone, atol=1e-5)


def test_other_weights_are_refused(embedding_mapper, tmp_path) -> None:
    d = tmp_path / "model"
    shutil.copytree(model_dir(), d)
    with (d / "model.safetensors").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x00\x01")
    with pytest.raises(ModelUnavailable, match="sha256"):
        Encoder(d)


def test_numpy_encoder_matches_the_pytorch_reference(embedding_mapper) -> None:
    """The same texts through PyTorch + transformers (minilm_reference.json) give the same vectors."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).with_name("minilm_reference.json")).read_text())
    got = embedding_mapper.encoder.encode(ref["texts"])
    assert np.allclose(got, np.array(ref["embeddings"], dtype=np.float32), atol=1e-5)
