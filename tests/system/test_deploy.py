"""Deployment artefacts: the Dockerfile lints clean (hadolint), the Helm chart lints and
renders with Helm's real Go SDK (helm-python-sdk), and the dashboard queries real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import helm_python
import pytest
import yaml

from tests.support import ROOT
from worker.telemetry.metrics import METRICS

CHART = ROOT / "helm" / "extworker"
REDIS = {"redis": {"url": "redis://redis-master:6379/2"}}
# Several pods reach blobs: they share a bucket (pod-local storage is refused).
BASE = {**REDIS, "blobs": {"url": "s3://media/blobs"}}


def test_dockerfile_lints_clean():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([exe, "--format", "json", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stdout


def test_wheel_ships_every_module_and_its_data(tmp_path):
    """The image installs with a plain (non-editable) ``pip install .``: the wheel must hold
    every module of the three packages, their data files and the entry points."""
    src = tmp_path / "src"  # a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".data", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(src)], check=True)
    (wheel,) = tmp_path.glob("extworker-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("worker", "extensions", "webhooks"):
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / pkg).rglob("*.py")}
        assert f"{pkg}/__init__.py" in sources  # a regular package, not a namespace one
        assert sources <= names, sorted(sources - names)
    assert {"worker/schema/job.schema.json", "extensions/data/tags.txt"} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "extworker = worker.cli:main" in text
    assert "remove-bg = extensions.remove_bg:RemoveBg" in text


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .* AS (\w+)$", text, re.M)
    assert stages == ["build", "models", "final"]
    final = text.split("AS final", 1)[1]
    assert "ARG DEVICE" in text and "onnxruntime-gpu" not in final
    assert "USER 10001" in final and "HEALTHCHECK" in final and "/healthz" in final
    assert 'ENTRYPOINT ["extworker"]' in final and 'CMD ["serve"]' in final
    # The same image runs `extworker api`, reaches blobs on object storage (s3), reads video.
    assert text.count('".[bg,vision,api,s3,video]"') == 2
    assert "ARG MODELS" in text and "models pull" in text
    # No compilers in the final image: its one system package is ExifTool (Perl).
    installs = [line.split("--no-install-recommends", 1)[1].split()
                for line in final.splitlines() if "apt-get install" in line]
    assert installs == [["libimage-exiftool-perl", "\\"]], installs
    assert "gcc" not in final and "build-essential" not in final


def _helm():
    return helm_python  # a test dependency: missing it must fail, not skip


def _render(values: dict) -> dict[str, list[dict]]:
    helm = _helm()
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    out = chart.render(values, name="rel", namespace="media")
    docs: dict[str, list[dict]] = {}
    for text in out.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.setdefault(doc["kind"], []).append(doc)
    return docs


def _by_name(docs: list[dict], suffix: str) -> dict:
    return next(d for d in docs if d["metadata"]["name"].endswith(suffix))


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_chart_lints_clean():
    report = _helm().lint(str(CHART), BASE, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_defaults_render_cpu_and_webhook_workers():
    docs = _render(BASE)
    deps = docs["Deployment"]
    assert sorted(d["metadata"]["name"] for d in deps) == ["rel-extworker-api",
                                                           "rel-extworker-cpu",
                                                           "rel-extworker-webhooks"]
    cpu = _by_name(deps, "-cpu")["spec"]["template"]["spec"]
    c = cpu["containers"][0]
    assert c["args"] == ["serve", "--processes", "1", "--threads", "2", "--queues", "default",
                         "extensions"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 9191}]
    env = _env(c)
    assert env["EXTWORKER_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "rel-extworker-redis", "key": "url"}
    assert "EXTWORKER_SECRET_KEY" not in env
    assert cpu["terminationGracePeriodSeconds"] > int(env["EXTWORKER_SHUTDOWN_TIMEOUT_S"]["value"])
    assert cpu["securityContext"]["runAsNonRoot"] is True
    hooks = _by_name(deps, "-webhooks")["spec"]["template"]["spec"]["containers"][0]
    assert hooks["args"][-2:] == ["--queues", "webhooks"]
    secret = docs["Secret"][0]
    assert secret["stringData"] == {"url": "redis://redis-master:6379/2"}
    assert len(docs["PodDisruptionBudget"]) == 2
    assert "ScaledObject" not in docs and "ServiceMonitor" not in docs


def test_gpu_workers():
    docs = _render({**BASE, "workers": {"gpu": {"enabled": True, "gpus": 2},
                                         "cpu": {"enabled": False}}})
    spec = _by_name(docs["Deployment"], "-gpu")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert c["image"].endswith(":0.1.0-cuda")
    assert _env(c)["EXTWORKER_DEVICE"]["value"] == "cuda"
    assert c["args"][-2:] == ["--queues", "extensions"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        spec["tolerations"]


def test_keda_scales_each_group_on_its_queues():
    on = {"autoscaling": {"keda": {"enabled": True}}}
    docs = _render({**BASE, "workers": {"cpu": on, "gpu": {"enabled": True, **on},
                                         "webhooks": on}})
    scaled = {d["metadata"]["name"]: d for d in docs["ScaledObject"]}
    assert set(scaled) == {"rel-extworker-cpu", "rel-extworker-gpu", "rel-extworker-webhooks"}
    cpu = scaled["rel-extworker-cpu"]["spec"]
    assert [t["metadata"]["listName"] for t in cpu["triggers"]] == ["dramatiq:default",
                                                                    "dramatiq:extensions"]
    assert {t["type"] for t in cpu["triggers"]} == {"redis"}
    t = cpu["triggers"][0]["metadata"]
    assert t["address"] == "redis-master:6379" and t["databaseIndex"] == "2"
    gpu = scaled["rel-extworker-gpu"]["spec"]
    assert gpu["minReplicaCount"] == 0 and gpu["scaleTargetRef"]["name"] == "rel-extworker-gpu"
    assert [t["metadata"]["listName"] for t in gpu["triggers"]] == ["dramatiq:extensions"]
    assert all("replicas" not in d["spec"] for d in docs["Deployment"]  # KEDA owns it
               if not d["metadata"]["name"].endswith("-api"))


def test_hpa_when_keda_is_off():
    docs = _render({**BASE, "workers": {"cpu": {"autoscaling": {"hpa": {"enabled": True}}}}})
    hpa = docs["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-extworker-cpu"


def test_existing_secrets_and_operator_objects():
    docs = _render({"redis": {"existingSecret": "redis-creds", "existingSecretKey": "uri"},
                    "secretKey": {"existingSecret": "hooks", "existingSecretKey": "key"},
                    "blobs": BASE["blobs"], "keda": {"redisAddress": "redis:6379"},
                    "metrics": {"serviceMonitor": {"enabled": True},
                                "dashboard": {"enabled": True}}})
    assert "Secret" not in docs
    env = _env(_by_name(docs["Deployment"], "-cpu")["spec"]["template"]["spec"]["containers"][0])
    assert env["EXTWORKER_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-creds",
                                                                       "key": "uri"}
    assert env["EXTWORKER_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "hooks",
                                                                        "key": "key"}
    sm = docs["ServiceMonitor"][0]["spec"]
    assert sm["endpoints"][0]["port"] == "http" and sm["endpoints"][0]["path"] == "/metrics"
    cm = next(d for d in docs["ConfigMap"] if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["extworker.json"])["uid"] == "extworker"


def test_chart_refuses_bad_values():
    helm = _helm()
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError, match="redis"):
        chart.render({}, name="rel")
    with pytest.raises(helm.HelmError):
        chart.validate_schema({**BASE, "workers": {"cpu": {"threads": 0}}})
    with pytest.raises(helm.HelmError):
        chart.validate_schema({**BASE, "workers": {"gpu": {"device": "tpu"}}})


def test_dashboard_queries_only_real_metrics():
    dash = json.loads((CHART / "dashboards" / "extworker.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for needed in ("throughput", "p50", "p95", "failures", "units", "queue depth",
                   "webhook success", "exhausted"):
        assert needed in titles, needed
    used = set()
    for e in exprs:
        for name in re.findall(r"extworker_[a-z_]+", e):
            used.add(re.sub(r"_(bucket|count|sum)$", "", name))
    assert used and used <= set(METRICS), used - set(METRICS)


def test_the_production_page_documents_every_metric():
    readme = (ROOT / "docs" / "production.md").read_text()
    missing = [n for n in METRICS if f"`{n}`" not in readme]
    assert not missing, missing


def test_readiness_names_a_malformed_preload_entry(settings, rclient):
    """A preload entry without ``kind:`` answers 503 with the reason (it used to crash)."""
    import redis as _redis

    from worker.telemetry.ops import check_ready

    settings.preload = ["u2netp", "remove-bg:u2netp"]
    ok, problems = check_ready(_redis.Redis.from_url(settings.redis_url), settings)
    assert not ok
    assert problems == ["preload entry 'u2netp': expected <kind>:<name>, e.g. remove-bg:u2netp"]


def test_rembg_finds_pulled_models_where_the_loader_puts_them(models_dir, monkeypatch):
    """The pinned rembg range reads the per-model layout `models pull` writes, with no
    download: rembg releases before 2.0.80 look in a flat directory and fetch the model."""
    import importlib.metadata
    import tomllib

    import pooch

    from worker.models.catalog import REGISTRY

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["bg"]
    assert "rembg>=2.0.80,<=2.0.86" in spec
    installed = tuple(int(p) for p in importlib.metadata.version("rembg").split(".")[:3])
    assert (2, 0, 80) <= installed <= (2, 0, 86)

    def no_download(*a, **k):
        raise AssertionError("rembg tried to download a model")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    monkeypatch.setenv("U2NET_HOME", str(models_dir / "rembg"))
    from rembg.sessions.u2netp import U2netpSession

    assert U2netpSession.download_models() == str(REGISTRY["u2netp"].path(models_dir))


def test_readiness_waits_for_preloaded_models_to_be_loaded(settings, rclient, models_dir):
    """Present on disk is not enough for a preloaded model: this pod's workers must report
    it loaded (the ModelKeeper's report), or /readyz answers 503 saying so."""
    import json as _json
    import socket

    import redis as _redis

    from worker.telemetry.ops import check_ready

    client = _redis.Redis.from_url(settings.redis_url)
    settings.preload = ["remove-bg:u2netp"]
    ok, problems = check_ready(client, settings)
    assert not ok and problems == ["remove-bg:u2netp: not loaded yet by this pod's workers"]
    rclient.set(settings.keys.models_loaded("another-host-1"), _json.dumps(["u2netp"]))
    assert not check_ready(client, settings)[0]  # another pod's report does not count
    mine = settings.keys.models_loaded(f"{socket.gethostname()}-4242")
    rclient.set(mine, _json.dumps(["u2netp"]))
    assert check_ready(client, settings) == (True, [])


def test_doctor_runs_as_a_cronjob():
    docs = _render(BASE)
    (cron,) = docs["CronJob"]
    spec = cron["spec"]
    assert spec["schedule"] == "*/5 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["doctor", "--fix"] and pod["restartPolicy"] == "Never"
    assert _env(c)["EXTWORKER_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == \
        "rel-extworker-redis"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "CronJob" not in _render({**BASE, "doctor": {"enabled": False}})


def test_the_api_gets_a_deployment_service_probes_and_optional_ingress_and_hpa():
    docs = _render(BASE)
    api = _by_name(docs["Deployment"], "-api")
    c = api["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["api", "--host", "0.0.0.0", "--port", "8080"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert _env(c)["EXTWORKER_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    svc = _by_name(docs["Service"], "-api")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    assert "Ingress" not in docs and api["spec"]["replicas"] == 2
    on = _render({**BASE, "api": {"ingress": {"enabled": True, "host": "media.example.com",
                                               "className": "nginx"},
                                   "autoscaling": {"enabled": True, "maxReplicas": 6}}})
    (ing,) = on["Ingress"]
    assert ing["spec"]["rules"][0]["host"] == "media.example.com"
    assert ing["spec"]["ingressClassName"] == "nginx"
    hpa = _by_name(on["HorizontalPodAutoscaler"], "-api")
    assert hpa["spec"]["maxReplicas"] == 6
    assert "replicas" not in _by_name(on["Deployment"], "-api")["spec"]
    off = _render({**BASE, "api": {"enabled": False}})
    assert not any(d["metadata"]["name"].endswith("-api") for d in off["Deployment"])


def _pod_env(docs: dict, kind: str, suffix: str) -> tuple[dict, dict]:
    """(the pod spec, its first container's env by name) of the workload ``suffix``."""
    obj = _by_name(docs[kind], suffix)
    spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"] if kind == "CronJob" \
        else obj["spec"]["template"]["spec"]
    return spec, _env(spec["containers"][0])


def test_pod_local_storage_is_refused_for_more_than_one_pod():
    helm = _helm()
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError, match=r"blobs: 3 pods reach blob storage .* pod-local"):
        chart.render(REDIS, name="rel")  # the defaults: 2 API replicas and a cpu worker
    with pytest.raises(helm.HelmError, match=r"blobs: 10 pods"):
        chart.render({**REDIS, "api": {"enabled": False},
                      "workers": {"cpu": {"autoscaling": {"keda": {"enabled": True}}}}},
                     name="rel")
    # One pod that reaches blobs (the webhooks pool never does) may keep them on its own.
    docs = _render({**REDIS, "api": {"enabled": False}})
    _, env = _pod_env(docs, "Deployment", "-cpu")
    assert "EXTWORKER_BLOB_URL" not in env


def test_s3_with_a_secret_and_minio_reach_every_pod_that_touches_blobs():
    docs = _render({**REDIS, "blobs": {
        "url": "s3://media/extworker", "endpoint": "http://minio.storage:9000",
        "region": "us-east-1", "credentials": {"existingSecret": "minio-keys"}}})
    for kind, suffix in (("Deployment", "-api"), ("Deployment", "-cpu"), ("CronJob", "-doctor")):
        spec, env = _pod_env(docs, kind, suffix)
        assert env["EXTWORKER_BLOB_URL"]["value"] == "s3://media/extworker", suffix
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
        assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "minio-keys", "key": "access-key-id"}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == \
            "secret-access-key"
        assert "volumes" not in spec


def test_the_postgresql_store_url_comes_from_a_secret_to_every_pod():
    """``store.existingSecret``: every pod that reads records (API, workers, doctor) gets
    EXTWORKER_STORE_URL from it; ``store.url``: the chart's own Secret; neither: Redis."""
    for values, secret in (({"existingSecret": "pg-creds", "existingSecretKey": "dsn"},
                            {"name": "pg-creds", "key": "dsn"}),
                           ({"url": "postgresql://extworker@pg:5432/extworker"},
                            {"name": "rel-extworker-store", "key": "url"})):
        docs = _render({**REDIS, "blobs": BASE["blobs"], "store": values})
        for kind, suffix in (("Deployment", "-api"), ("Deployment", "-cpu"),
                             ("Deployment", "-webhooks"), ("CronJob", "-doctor")):
            _, env = _pod_env(docs, kind, suffix)
            assert env["EXTWORKER_STORE_URL"]["valueFrom"]["secretKeyRef"] == secret, suffix
            assert "value" not in env["EXTWORKER_STORE_URL"]  # never in the pod spec itself
        made = [d for d in docs.get("Secret", []) if d["metadata"]["name"].endswith("-store")]
        assert len(made) == ("url" in values)
        if made:
            assert made[0]["stringData"]["url"] == values["url"]
    _, env = _pod_env(_render({**REDIS, "blobs": BASE["blobs"]}), "Deployment", "-cpu")
    assert "EXTWORKER_STORE_URL" not in env
    with pytest.raises(_helm().HelmError):
        _helm().Chart.load(str(CHART)).validate_schema({**BASE, "store": {"url": "mysql://x"}})


def test_s3_through_irsa_uses_an_annotated_service_account():
    role = "arn:aws:iam::123456789012:role/extworker-blobs"
    docs = _render({**REDIS, "blobs": {"url": "s3://media/extworker", "region": "eu-west-1"},
                    "serviceAccount": {"create": True, "annotations": {
                        "eks.amazonaws.com/role-arn": role}}})
    (sa,) = docs["ServiceAccount"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    for kind, suffix in (("Deployment", "-api"), ("Deployment", "-cpu"),
                         ("Deployment", "-webhooks"), ("CronJob", "-doctor")):
        spec, env = _pod_env(docs, kind, suffix)
        assert spec["serviceAccountName"] == sa["metadata"]["name"], suffix
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_ENDPOINT_URL" not in env


def test_a_read_write_many_volume_is_mounted_where_blobs_live():
    docs = _render({**REDIS, "blobs": {"volume": {"claimName": "media-rwx"}},
                    "redisPersistence": {"require": True}})
    for kind, suffix in (("Deployment", "-api"), ("Deployment", "-cpu"), ("CronJob", "-doctor")):
        spec, env = _pod_env(docs, kind, suffix)
        assert env["EXTWORKER_BLOB_URL"]["value"] == "file:///var/lib/extworker/blobs", suffix
        assert env["EXTWORKER_REQUIRE_PERSISTENT_REDIS"]["value"] == "true"
        assert spec["volumes"] == [{"name": "blobs",
                                    "persistentVolumeClaim": {"claimName": "media-rwx"}}]
        assert spec["containers"][0]["volumeMounts"] == [
            {"name": "blobs", "mountPath": "/var/lib/extworker/blobs"}]


def test_every_pod_builds_file_urls_on_the_api_address_clients_reach():
    docs = _render(BASE)
    for kind, suffix in (("Deployment", "-api"), ("Deployment", "-cpu"), ("CronJob", "-doctor")):
        _, env = _pod_env(docs, kind, suffix)
        assert env["EXTWORKER_API_URL"]["value"] == "http://rel-extworker-api:80", suffix
    tls = _render({**BASE, "api": {"ingress": {"enabled": True, "host": "media.example.com",
                                                "tls": [{"hosts": ["media.example.com"]}]}}})
    _, env = _pod_env(tls, "Deployment", "-cpu")
    assert env["EXTWORKER_API_URL"]["value"] == "https://media.example.com"
    given = _render({**BASE, "api": {"publicUrl": "https://cdn.example.com/media"}})
    _, env = _pod_env(given, "Deployment", "-api")
    assert env["EXTWORKER_API_URL"]["value"] == "https://cdn.example.com/media"
