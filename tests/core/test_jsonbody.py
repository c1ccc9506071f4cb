"""The depth check agrees with a plain recursive count on any JSON document."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from cds.web.body import json_depth

tricky_text = st.text(alphabet=st.sampled_from(list('ab[]{}"\\\n/')), max_size=12)
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | tricky_text,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(tricky_text, c, max_size=3),
    max_leaves=30,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


@given(documents)
def test_depth_matches_recursive_count(doc: Any) -> None:
    assert json_depth(orjson.dumps(doc)) == reference_depth(doc)
