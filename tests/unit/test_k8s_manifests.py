"""deploy/k8s: the base and each overlay, rendered as Kustomize would (the few features they use), validated
offline against the Kubernetes API schemas `kubernetes-validate` bundles (strict: no unknown field), the
PodMonitor (a Prometheus Operator CRD, not bundled) against the fields its CRD requires; and what the manifests
say matches kafkatrail: every scalable role has a Deployment with probes on its /healthz and /readyz port,
resource requests, the settings file it loads, and the setup Job creates the topics and applies the trails.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kafkatrail.core.settings import load_settings
from kafkatrail.node import role_port
from kafkatrail.trails.definitions import load_trails

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas"}
SCALABLE = ("processors", "insights", "s3", "cloudwatch", "digests", "s3-insights", "cloudwatch-insights")
OVERLAYS = sorted(path.parent for path in (K8S / "overlays").glob("*/kustomization.yaml"))


def render(folder: Path) -> list[dict[str, Any]]:
    """The resources of a kustomization: its files and folders, then its namespace, images and replicas."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kustomization) <= SUPPORTED, f"{folder}: render() does not do {set(kustomization) - SUPPORTED}"
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        resources += render(path) if path.is_dir() else [copy.deepcopy(doc) for doc in
                                                         yaml.safe_load_all(path.read_text()) if doc]
    for resource in resources:
        if "namespace" in kustomization:
            resource["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(resource):
            for image in kustomization.get("images", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for replicas in kustomization.get("replicas", []):
            if resource["kind"] == "Deployment" and resource["metadata"]["name"] == replicas["name"]:
                resource["spec"]["replicas"] = replicas["count"]
    return resources


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def check_pod_monitor(resource: dict[str, Any]) -> None:
    """What monitoring.coreos.com/v1's PodMonitor CRD requires, and that it selects kafkatrail's pods."""
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    spec = resource["spec"]
    assert set(spec) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "kafkatrail"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"} and endpoint["port"] == "metrics"


@pytest.mark.parametrize("folder", [K8S / "base", *OVERLAYS], ids=lambda path: path.name)
def test_every_resource_validates_against_the_kubernetes_schemas(folder: Path) -> None:
    resources = render(folder)
    assert len(resources) >= len(SCALABLE) + 3
    for resource in resources:
        if resource["kind"] == "PodMonitor":
            check_pod_monitor(resource)
        else:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_works_offline_and_refuses_a_bad_manifest() -> None:
    deployment = copy.deepcopy(by_kind(render(K8S / "base"), "Deployment")["kafkatrail-s3"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("folder", [K8S / "base", *OVERLAYS], ids=lambda path: path.name)
def test_each_scalable_role_runs_with_probes_requests_and_the_settings(folder: Path) -> None:
    resources = render(folder)
    deployments = by_kind(resources, "Deployment")
    assert set(deployments) == {f"kafkatrail-{role}" for role in SCALABLE}
    settings_map = by_kind(resources, "ConfigMap")["kafkatrail-settings"]
    for role in SCALABLE:
        deployment = deployments[f"kafkatrail-{role}"]
        assert deployment["spec"]["replicas"] >= 1
        (container,) = containers(deployment)
        assert container["command"] == ["kafkatrail", "worker", role]
        (port,) = container["ports"]
        assert port == {"name": "metrics", "containerPort": role_port(load_settings(), role)}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        requests = container["resources"]["requests"]
        assert re.fullmatch(r"[1-9][0-9]*m", requests["cpu"]) and re.fullmatch(r"[1-9][0-9]*Mi", requests["memory"])
        env = {item["name"]: item for item in container["env"]}
        assert env["KAFKATRAIL_CONFIG"]["value"] == "/etc/kafkatrail/kafkatrail.toml"
        assert all(item["valueFrom"]["secretKeyRef"]["name"] in ("kafkatrail-kafka", "kafkatrail-aws")
                   for item in env.values() if "secretKeyRef" in item.get("valueFrom", {}))
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "settings", "configMap": {"name": settings_map["metadata"]["name"]}} in volumes
    assert "strategy" not in deployments["kafkatrail-digests"]["spec"]  # chains are fenced: it rolls like the rest


def test_the_settings_and_trails_of_the_config_map_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = by_kind(render(K8S / "base"), "ConfigMap")["kafkatrail-settings"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    monkeypatch.delenv("KAFKATRAIL_CONFIG", raising=False)
    settings = load_settings(tmp_path / "kafkatrail.toml")
    sections = tomllib.loads(data["kafkatrail.toml"])
    for role in SCALABLE:
        section = role.replace("-", "_")
        assert getattr(settings, section).metrics_host == "0.0.0.0", f"{section}: probes come from outside the pod"
        assert section in sections
    assert load_trails(tmp_path / "trails.yaml")


def test_the_setup_job_creates_the_topics_then_applies_the_trails() -> None:
    job = by_kind(render(K8S / "base"), "Job")["kafkatrail-setup"]
    spec = job["spec"]["template"]["spec"]
    assert [c["command"][:3] for c in spec["initContainers"]] == [["kafkatrail", "topics", "create"]]
    assert [c["command"][:4] for c in spec["containers"]] == [
        ["kafkatrail", "trails", "apply", "/etc/kafkatrail/trails.yaml"]]


def test_the_small_overlay_pins_the_image_and_a_namespace() -> None:
    resources = render(K8S / "overlays" / "small")
    assert {r["metadata"]["namespace"] for r in resources} == {"kafkatrail-small"}
    assert {c["image"] for r in resources for c in containers(r)} == {"registry.example.com/kafkatrail:0.1.0"}
