"""Saved extensions, custom metadata fields and ai-tasks (tiny random models, real Redis)."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.test_pipeline import run_job
from tests.support import cli, jpeg
from worker.core.errors import PermanentError
from worker.store.fields import CustomField, validate_value
from worker.store.saved import MAX_SAVED

VOCAB = ["shirt", "pants", "shoes", "bag", "hat"]
PRODUCT_CLASSIFIER = {"name": "ai-tasks", "tasks": [
    {"type": "select_tags", "instruction": "What type of product is shown?",
     "vocabulary": VOCAB, "max_selections": 1},
    {"type": "select_metadata", "instruction": "What is the main colour of the product?",
     "field": "color", "min_selections": 1},
    {"type": "yes_no", "instruction": "Is the product on a plain white background?",
     "on_yes": {"add_tags": ["white-background"]},
     "on_no": {"add_tags": ["needs-retouch"], "set_metadata": [{"field": "qc", "value": "review"}]},
     "on_unknown": {"add_tags": ["qc-unsure"]}},
]}


@pytest.fixture
def fields(runtime):
    f = runtime.pipeline.fields
    f.create("default", {"name": "color", "label": "Colour", "schema": {
        "type": "SingleSelect", "selectOptions": ["red", "green", "blue", "white", "black"]}})
    f.create("default", {"name": "materials", "label": "Materials", "schema": {
        "type": "MultiSelect", "selectOptions": ["cotton", "leather", "wool", "denim"]}})
    f.create("default", {"name": "qc", "label": "QC status", "schema": {
        "type": "SingleSelect", "selectOptions": ["ok", "review"]}})
    f.create("default", {"name": "weight", "label": "Weight", "schema": {
        "type": "Number", "minValue": 0, "maxValue": 100}})
    return f


def _run(runtime, astronaut, ext, **job):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "p.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [ext], **job})
    return doc, runtime.pipeline.get_file(rec.fileId)


# --- fields -------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "fragment"), [
    ({"type": "SingleSelect"}, "selectOptions are required"),
    ({"type": "Text", "selectOptions": ["a"]}, "only apply to select fields"),
    ({"type": "Colour"}, "schema.type"),
])
def test_field_definitions_are_validated(runtime, schema, fragment):
    with pytest.raises(PermanentError, match=fragment):
        runtime.pipeline.fields.create("default", {"name": "x", "label": "X", "schema": schema})


@pytest.mark.parametrize(("schema", "value", "ok"), [
    ({"type": "Text", "maxLength": 3}, "abc", True),
    ({"type": "Text", "maxLength": 3}, "abcd", False),
    ({"type": "Number", "minValue": 0, "maxValue": 10}, 5, True),
    ({"type": "Number", "minValue": 0, "maxValue": 10}, 11, False),
    ({"type": "Number"}, "5", False),
    ({"type": "Boolean"}, True, True),
    ({"type": "Boolean"}, "yes", False),
    ({"type": "Date"}, "2026-11-22", True),
    ({"type": "Date"}, "yesterday", False),
    ({"type": "SingleSelect", "selectOptions": ["a", "b"]}, "a", True),
    ({"type": "SingleSelect", "selectOptions": ["a", "b"]}, "c", False),
    ({"type": "MultiSelect", "selectOptions": ["a", "b"]}, ["a", "b"], True),
    ({"type": "MultiSelect", "selectOptions": ["a", "b"]}, ["a", "z"], False),
])
def test_values_are_validated_against_the_field(schema, value, ok):
    f = CustomField.model_validate({"name": "f", "label": "F", "schema": schema})
    if ok:
        validate_value(f, value, "tasks[0].field")
    else:
        with pytest.raises(PermanentError, match=r"tasks\[0\]\.field: .*'f'"):
            validate_value(f, value, "tasks[0].field")


# --- saved extensions ---------------------------------------------------------


def test_saved_crud_and_validation(runtime):
    store = runtime.pipeline.saved
    item = store.create("acme", "Tags", "d", {"name": "google-auto-tagging",
                                              "minConfidence": 50, "maxTags": 5})
    assert item["id"].startswith("ext_") and store.get("acme", item["id"]) == item
    assert store.get("other", item["id"]) is None  # per account
    updated = store.update("acme", item["id"], name="Renamed",
                           config={"name": "aws-auto-tagging", "minConfidence": 1, "maxTags": 2})
    assert updated["name"] == "Renamed" and updated["config"]["name"] == "aws-auto-tagging"
    assert [s["id"] for s in store.list("acme")] == [item["id"]]
    with pytest.raises(PermanentError, match=r"config\.maxTags"):
        store.create("acme", "Bad", "", {"name": "google-auto-tagging", "minConfidence": 5})
    with pytest.raises(PermanentError, match="cannot reference another"):
        store.create("acme", "Loop", "", {"name": "saved-extension", "id": item["id"]})
    with pytest.raises(PermanentError, match=r"config\.tasks\[0\]\.vocabulary"):
        store.create("acme", "Bad", "", {"name": "ai-tasks", "tasks": [
            {"type": "select_tags", "instruction": "x", "vocabulary": ["50%"]}]})
    assert store.delete("acme", item["id"]) and not store.delete("acme", item["id"])


def test_saved_limit_is_one_hundred(runtime):
    store = runtime.pipeline.saved
    cfg = {"name": "remove-bg"}
    for i in range(MAX_SAVED):
        store.create("acme", f"n{i}", "", cfg)
    with pytest.raises(PermanentError, match="100 saved extensions"):
        store.create("acme", "one too many", "", cfg)
    assert len(store.list("acme")) == MAX_SAVED


def test_unknown_saved_id_fails_that_extension_only(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "p.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "saved-extension", "id": "ext_nope"},
        {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 1}]})
    slot = doc["extensions"]["saved-extension:ext_nope"]
    assert slot["status"] == "failed"
    assert slot["error"] == {"message": "saved extension not found: ext_nope",
                             "code": "saved_extension_not_found"}
    assert doc["extensions"]["aws-auto-tagging"]["status"] == "success"
    assert runtime.pipeline.get_file(rec.fileId).extensionStatus["saved-extension:ext_nope"] == \
        "failed"


def test_edits_affect_future_jobs_only(runtime, astronaut):
    store = runtime.pipeline.saved
    item = store.create("default", "Top tags", "", {"name": "aws-auto-tagging",
                                                    "minConfidence": 0, "maxTags": 1})
    rec = runtime.pipeline.add_file(jpeg(astronaut), "p.jpg")
    ref = {"name": "saved-extension", "id": item["id"]}
    runtime.pipeline.accept({"jobId": "before", "fileId": rec.fileId, "extensions": [ref]})
    store.update("default", item["id"], config={"name": "aws-auto-tagging",
                                                "minConfidence": 0, "maxTags": 4})
    rec2 = runtime.pipeline.add_file(jpeg(astronaut), "q.jpg")
    runtime.pipeline.accept({"jobId": "after", "fileId": rec2.fileId, "extensions": [ref]})
    while runtime.queued:  # execute both only now, after the edit
        _, job_id, slot = runtime.queued.pop(0)
        runtime.pipeline.execute(job_id, slot)
    assert len(runtime.pipeline.get_file(rec.fileId).AITags) == 1
    assert len(runtime.pipeline.get_file(rec2.fileId).AITags) == 4
    key = f"saved-extension:{item['id']}"
    assert runtime.pipeline.get_job("before").to_json()["extensions"][key]["config"]["maxTags"] == 1
    # Units are metered under the base extension's name.
    assert runtime.pipeline.usage("default")["extensions"] == {"aws-auto-tagging": 2}


# --- ai-tasks -----------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "min_sel", "max_sel", "count"),
                         [(0.99, 2, 3, 2), (0.0, 0, 3, 3), (0.99, 0, 3, 0), (0.0, 1, 1, 1)])
def test_select_tags_min_max_hold_even_when_unsure(runtime, astronaut, threshold, min_sel,
                                                   max_sel, count):
    runtime.settings.task_threshold = threshold
    doc, rec = _run(runtime, astronaut, {"name": "ai-tasks", "tasks": [
        {"type": "select_tags", "instruction": "What is it?", "vocabulary": VOCAB,
         "min_selections": min_sel, "max_selections": max_sel}]})
    slot = doc["extensions"]["ai-tasks"]
    assert slot["status"] == "success", slot
    tags = rec.tags or []
    assert len(tags) == count and set(tags) <= set(VOCAB)
    out = slot["output"]["tasks"][0]
    assert out["selected"] == tags and set(out["scores"]) == set(VOCAB)
    best = sorted(VOCAB, key=lambda v: -out["scores"][v])
    assert tags == best[:count]  # the best-scoring options, in order


def test_single_vs_multi_select_metadata(runtime, astronaut, fields):
    runtime.settings.task_threshold = 0.0
    doc, rec = _run(runtime, astronaut, {"name": "ai-tasks", "tasks": [
        {"type": "select_metadata", "instruction": "Colour?", "field": "color",
         "max_selections": 3},
        {"type": "select_metadata", "instruction": "Materials?", "field": "materials",
         "max_selections": 2},
    ]})
    assert doc["extensions"]["ai-tasks"]["status"] == "success"
    assert rec.customMetadata["color"] in ["red", "green", "blue", "white", "black"]
    assert isinstance(rec.customMetadata["materials"], list)
    assert len(rec.customMetadata["materials"]) == 2
    assert set(rec.customMetadata["materials"]) <= {"cotton", "leather", "wool", "denim"}


def test_select_metadata_vocabulary_must_be_field_options(runtime, astronaut, fields):
    doc, _ = _run(runtime, astronaut, {"name": "ai-tasks", "tasks": [
        {"type": "select_metadata", "instruction": "Colour?", "field": "color",
         "vocabulary": ["red", "purple"]}]})
    err = doc["extensions"]["ai-tasks"]["error"]
    assert "tasks[0].vocabulary" in err["message"] and "purple" in err["message"]


def test_unknown_metadata_field_fails_naming_it(runtime, astronaut, fields):
    doc, rec = _run(runtime, astronaut, {"name": "ai-tasks", "tasks": [
        {"type": "select_tags", "instruction": "x", "vocabulary": VOCAB},
        {"type": "select_metadata", "instruction": "Size?", "field": "size"}]})
    err = doc["extensions"]["ai-tasks"]["error"]
    assert err["code"] == "unknown_field"
    assert err["message"] == "tasks[1].field: unknown custom metadata field 'size'"
    assert rec.tags is None  # nothing from the other task was written either


def test_invalid_branch_value_fails_naming_it(runtime, astronaut, fields):
    doc, rec = _run(runtime, astronaut, {"name": "ai-tasks", "tasks": [
        {"type": "yes_no", "instruction": "Heavy?",
         "on_yes": {"set_metadata": [{"field": "weight", "value": 500}]},
         "on_no": {"add_tags": ["light"]}}]})
    err = doc["extensions"]["ai-tasks"]["error"]
    assert "tasks[0].on_yes.set_metadata[0].value" in err["message"]
    assert "'weight'" in err["message"] and rec.customMetadata == {}


@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_yes_no_branches(runtime, astronaut, fields, margin):
    runtime.settings.task_yes_no_margin = margin
    doc, rec = _run(runtime, astronaut, PRODUCT_CLASSIFIER)
    slot = doc["extensions"]["ai-tasks"]
    assert slot["status"] == "success", slot
    answer = slot["output"]["tasks"][2]["answer"]
    if margin == 1.0:
        assert answer == "unknown"  # nothing can lead by 100 points
    else:
        assert answer == ("yes" if slot["output"]["tasks"][2]["yes"] >= 50 else "no")
    expected = {"yes": {"white-background"}, "no": {"needs-retouch"}, "unknown": {"qc-unsure"}}
    tags = set(rec.tags or [])
    assert expected[answer] <= tags
    assert not (tags & (set().union(*expected.values()) - expected[answer]))
    assert (rec.customMetadata.get("qc") == "review") == (answer == "no")
    assert (tags - {"white-background", "needs-retouch", "qc-unsure"}) <= set(VOCAB)
    assert runtime.pipeline.usage("default")["extensions"] == {"ai-tasks": 12}  # 4 × 3 tasks


def test_three_tasks_land_in_one_patch(runtime, astronaut, fields):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "p.jpg")
    runtime.pipeline.accept({"fileId": rec.fileId, "extensions": [PRODUCT_CLASSIFIER]})
    file_key = runtime.pipeline.file_key(rec.fileId)
    writes = []
    real = runtime.pipeline.kv.transact

    def counting(keys, fn):
        def wrapped(cur):
            txn = fn(cur)
            if file_key in txn.writes:
                writes.append(txn.writes[file_key])
            return txn
        return real(keys, wrapped)

    runtime.pipeline.kv.transact = counting
    (_, job_id, slot), = runtime.queued
    runtime.pipeline.execute(job_id, slot)
    assert len(writes) == 1  # one atomic patch for all three tasks
    final = writes[0]
    assert final["extensionStatus"]["ai-tasks"] == "success"
    assert final["tags"] and "color" in final["customMetadata"]


@pytest.mark.slow
def test_saved_task_auto_tagging_and_remove_bg_through_serve(server, settings, rclient,
                                                            tmp_path, astronaut):
    for args in (["color", "--type", "SingleSelect", "--select-options",
                  '["red", "green", "blue", "white", "black"]'],
                 ["qc", "--type", "SingleSelect", "--select-options", '["ok", "review"]']):
        cli(settings, "fields", "create", *args)
    cfg = tmp_path / "classifier.json"
    cfg.write_text(json.dumps(PRODUCT_CLASSIFIER))
    saved = json.loads(cli(settings, "saved", "create", "--name", "Product classifier",
                           "--description", "type, colour, QC", "--config", f"@{cfg}").stdout)
    assert json.loads(cli(settings, "saved", "get", saved["id"]).stdout)["config"]["tasks"]
    img = tmp_path / "p.jpg"
    img.write_bytes(jpeg(astronaut))
    fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
    exts = [{"name": "saved-extension", "id": saved["id"]},
            {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3},
            {"name": "remove-bg"}]
    out = json.loads(cli(settings, "submit", "--file-id", fid, "--extensions", json.dumps(exts),
                         "--wait", "60").stdout)
    key = f"saved-extension:{saved['id']}"
    assert out["extensionStatus"] == {key: "success", "google-auto-tagging": "success",
                                      "remove-bg": "success"}
    file = out["file"]
    assert file["versionInfo"]["name"] == "Version 2"
    assert {t["source"] for t in file["AITags"]} == {"google-auto-tagging"}
    assert set(file["tags"]) <= set(VOCAB) | {"white-background", "needs-retouch", "qc-unsure"}
    assert file["customMetadata"]["color"] in ["red", "green", "blue", "white", "black"]
    usage = json.loads(cli(settings, "usage", "default").stdout)["extensions"]
    assert usage == {"ai-tasks": 12, "google-auto-tagging": 2, "remove-bg": 130}
    fields = json.loads(cli(settings, "fields", "list").stdout)
    assert [f["name"] for f in fields] == ["color", "qc"]
