"""``ModelRef``: ``<kind>:<name>`` parsed in one place; the cache, the inference protocol and
the preload list share it."""

from __future__ import annotations

import pytest

from worker.models.cache import ModelCache
from worker.models.ref import ModelKind, ModelRef


def test_parse_and_print_round_trip():
    ref = ModelRef.parse("remove-bg:u2netp")
    assert ref == ModelRef(ModelKind.REMOVE_BG, "u2netp") and str(ref) == "remove-bg:u2netp"
    assert ModelRef.parse("zero-shot:hf/org:model").name == "hf/org:model"  # first colon


@pytest.mark.parametrize(("text", "says"), [
    ("u2netp", "expected <kind>:<name>"), ("remove-bg:", "expected <kind>:<name>"),
    (":u2netp", "expected <kind>:<name>"), ("gpt:x", "unknown model kind 'gpt'"),
])
def test_a_bad_entry_says_what_is_expected(text, says):
    with pytest.raises(ValueError, match=says):
        ModelRef.parse(text)


def test_the_cache_is_keyed_by_refs():
    cache = ModelCache()
    ref = ModelRef(ModelKind.CLASSIFIER, "tiny")
    model = cache.get(ref, object)
    assert cache.get(ModelRef.parse("classifier:tiny"), object) is model  # the same key
    assert cache.loaded() == ["classifier:tiny"] and cache.loaded_names() == {"tiny"}
