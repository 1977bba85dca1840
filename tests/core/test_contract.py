"""The job contract: published schema is current; each rule fails naming its field."""

from __future__ import annotations

import json

import jsonschema
import pytest

from extensions.registry import Registry
from tests.support import ROOT
from worker.core.contract import JobEnvelope

CONTRACT = Registry.discover().contract  # the installed extensions' (the built-ins here)
Job = CONTRACT.job
parse_extension = CONTRACT.parse_extension

SCHEMA = ROOT / "worker" / "schema" / "job.schema.json"


def test_published_schema_is_current():
    published = json.loads(SCHEMA.read_text())
    assert published == CONTRACT.json_schema(), (
        "run: extworker schema > worker/schema/job.schema.json")


def test_schema_accepts_a_hosted_style_job_and_rejects_bad_params():
    schema = json.loads(SCHEMA.read_text())
    good = {
        "fileId": "f1", "webhookUrl": "https://example.com/hook",
        "extensions": [
            {"name": "remove-bg", "options": {"add_shadow": True, "bg_color": "81d4fa"}},
            {"name": "google-auto-tagging", "minConfidence": 80, "maxTags": 10},
            {"name": "aws-auto-tagging", "minConfidence": 80, "maxTags": 10},
            {"name": "ai-auto-description"},
            {"name": "saved-extension", "id": "ext_1"},
        ],
    }
    jsonschema.validate(good, schema)
    Job.model_validate(good)
    bad = {**good, "extensions": [{"name": "google-auto-tagging", "minConfidence": 80}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_envelope_defaults():
    job = JobEnvelope.model_validate({"fileId": "f1", "extensions": [{"name": "x"}]})
    assert job.accountId == "default" and job.origin == "upload" and len(job.jobId) == 32
    assert job.dryRun is False


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"name": "remove-bg", "options": {"bg_color": "notacolour"}}, "options.bg_color"),
        ({"name": "remove-bg", "options": {"bg_colour": "fff", "bg_image_url": "https://x/y"}},
         "mutually exclusive"),
        ({"name": "remove-bg", "options": {"shadow": True}}, "options.shadow"),
        ({"name": "remove-bg", "options": {"bg_image_url": "not a url"}}, "options.bg_image_url"),
        ({"name": "google-auto-tagging", "minConfidence": 101, "maxTags": 3}, "minConfidence"),
        ({"name": "aws-auto-tagging", "minConfidence": 50, "maxTags": 31}, "maxTags"),
        ({"name": "aws-auto-tagging", "maxTags": 3}, "minConfidence: Field required"),
        ({"name": "nope"}, "name: unknown extension 'nope'"),
        ({"options": {}}, "name: field required"),
        ({"name": "saved-extension"}, "id: Field required"),
        ({"name": "ai-tasks", "tasks": []}, "tasks"),
        ({"name": "ai-tasks", "tasks": [{"type": "select_tags", "instruction": "x",
                                         "vocabulary": ["a%b"]}]}, "tasks[0].vocabulary"),
        ({"name": "ai-tasks", "tasks": [{"type": "select_tags", "instruction": "x",
                                         "vocabulary": ["a" * 300, "b" * 201]}]},
         "500 characters"),
        ({"name": "ai-tasks", "tasks": [{"type": "yes_no", "instruction": "x"}]},
         "on_yes or on_no"),
        ({"name": "ai-tasks", "tasks": [{"type": "select_tags", "instruction": "",
                                         "vocabulary": ["a"]}]}, "tasks[0].instruction"),
    ],
)
def test_invalid_extension_names_the_field(raw, fragment):
    with pytest.raises(ValueError) as info:
        parse_extension(raw, "extensions[0]")
    assert fragment in str(info.value)
    assert str(info.value).startswith("extensions[0]")


def test_bg_colour_alias_and_hex_normalised():
    ext = parse_extension({"name": "remove-bg", "options": {"bg_colour": "81D4FA"}})
    assert ext.options.bg_color == "#81D4FA"  # type: ignore[attr-defined]
    named = parse_extension({"name": "remove-bg", "options": {"bg_color": "green"}})
    assert named.options.bg_color == "green"  # type: ignore[attr-defined]


def test_each_extension_owns_its_params_and_plug_ins_join_the_schema():
    """The contract is assembled from the installed extensions: each built-in's params
    model lives beside its handler, and a plug-in's model joins the published schema."""
    registry = Registry.discover(["tests.support.slow_extension:Sleep"])
    for name, model in registry.params.items():
        handler_module = type(registry.handlers[name]).__module__ if name in registry.handlers \
            else None
        assert model.__module__ == handler_module, (name, model.__module__)
    contract_source = (SCHEMA.parent.parent / "core" / "contract.py").read_text()
    assert not any(f'"{n}"' in contract_source for n in registry.params if n != "sleep")
    schema = registry.contract.json_schema()
    mapping = schema["properties"]["extensions"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(CONTRACT.names) | {"sleep"}
    good = {"fileId": "f1", "extensions": [{"name": "sleep", "seconds": 0.5}]}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"fileId": "f1", "extensions": [{"name": "sleep", "x": 1}]}, schema)
    assert "sleep" not in CONTRACT.names  # not installed: not in the published file
