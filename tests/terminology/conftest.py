"""Fixtures for the terminology tests: one lexical mapper and, where the model package is
installed (scripts/test installs it), one with embeddings."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("rapidfuzz")


@pytest.fixture(scope="session")
def lexical_mapper():
    from cds.fhir.terminology.mapper import Mapper

    return Mapper(embeddings=False)


@pytest.fixture(scope="session")
def embedding_mapper():
    from cds.fhir.terminology.embedding import ModelUnavailable, model_dir
    from cds.fhir.terminology.mapper import Mapper

    try:
        model_dir()
    except ModelUnavailable as e:
        if os.environ.get("CI") or os.environ.get("CDS_REQUIRE_DATA") == "1":
            pytest.fail(str(e))
        pytest.skip(str(e))
    m = Mapper(embeddings=True)
    assert m.encoder is not None, m.embedding_note
    return m
