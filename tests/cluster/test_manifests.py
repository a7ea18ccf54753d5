"""Checks of cluster/: the KubeRay manifests and the Ray cluster-launcher config, without Kubernetes or network.

    .venv/bin/pytest tests/cluster -q

- every YAML file parses (several documents a file allowed);
- every Kubernetes document uses only field names of its kind's allowlist below; a wrong one is reported as
  `FILE#INDEX Kind/name: unknown field dotted.path[0].key`;
- every RayJob runs a `jobs/*.py` that exists with a `--config` that exists (paths from the repository root),
  on the RayCluster of cluster/raycluster.yaml; the RayService serves `atheus_ray.serve.app:app_builder` with a
  config that exists;
- heads run no work, GPU worker groups (and GPU node types of the launcher) start at zero;
- every pod mounts the shared volume at /mnt/shared and a memory /dev/shm;
- secrets come from Kubernetes Secrets by secretKeyRef, and no file holds anything that looks like a key;
- cluster/launcher-aws.yaml validates against Ray's own ray-schema.json (read from the installed ray).

Where the allowlists come from (read, not copied):
- KubeRay ray.io/v1, repository ray-project/kuberay: the Go types ray-operator/apis/ray/v1/raycluster_types.go
  (commit 3275ee09), rayjob_types.go (commits 0057210e and f6ef3f7b), rayservice_types.go (commit 834fe3a8),
  the API reference generated from them, docs/reference/api.md (commit 0057210e: it also has
  autoscalerOptions.version, deletionStrategy, schedule, upgradeStrategy, excludeHeadPodFromServeSvc), and the
  CRD ray-operator/config/crd/bases/ray.io_rayjobs.yaml (commit 1184bc87, an older one: autoscalerOptions and
  env/valueFrom/secretKeyRef as spelled below). The index held no release tags for these commits; they are the
  v1 API of recent releases (they have managedBy, gcsFaultToleranceOptions, deletionStrategy, which older
  releases lack). Only fields seen there are listed; the deprecated RayService thresholds are left out on
  purpose. Every field that cluster/ uses is in each version of the Go types read.
- Kubernetes core/v1 (PodSpec, Container, EnvVar, Volume, ...): the field names of the official Kubernetes
  Python client 37.0.2 (kubernetes/client/models/v1_*.py, generated from the Kubernetes OpenAPI spec). Only
  long-standing fields are listed; a value of None means "a leaf, or a free-form map: not looked into".
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
IMAGE_REPO_DIR = "/home/ray/atheus_ray"  # where the image holds the repository (cluster/README.md)
SHARED_CLAIM, SHARED_PATH = "atheus-shared", "/mnt/shared"

# --- Kubernetes core/v1 ------------------------------------------------------------------------------------
OBJECT_META = {"name": None, "namespace": None, "labels": None, "annotations": None}
RESOURCES = {"limits": None, "requests": None}
ENV_VAR = {
    "name": None,
    "value": None,
    "valueFrom": {
        "secretKeyRef": {"name": None, "key": None, "optional": None},
        "configMapKeyRef": {"name": None, "key": None, "optional": None},
        "fieldRef": None,
        "resourceFieldRef": None,
    },
}
VOLUME_MOUNT = {"name": None, "mountPath": None, "readOnly": None, "subPath": None, "subPathExpr": None,
                "mountPropagation": None}  # fmt: skip
CONTAINER = {
    "name": None, "image": None, "imagePullPolicy": None, "command": None, "args": None, "workingDir": None,
    "env": ENV_VAR, "envFrom": None, "resources": RESOURCES, "volumeMounts": VOLUME_MOUNT, "volumeDevices": None,
    "ports": {"name": None, "containerPort": None, "protocol": None, "hostIP": None, "hostPort": None},
    "lifecycle": None, "livenessProbe": None, "readinessProbe": None, "startupProbe": None,
    "securityContext": None, "stdin": None, "stdinOnce": None, "tty": None,
    "terminationMessagePath": None, "terminationMessagePolicy": None,
}  # fmt: skip
VOLUME = {
    "name": None,
    "persistentVolumeClaim": {"claimName": None, "readOnly": None},
    "emptyDir": {"medium": None, "sizeLimit": None},
    "configMap": None, "secret": None, "hostPath": None, "nfs": None, "csi": None, "projected": None,
    "ephemeral": None, "downwardAPI": None,
}  # fmt: skip
POD_SPEC = {
    "containers": CONTAINER, "initContainers": CONTAINER, "volumes": VOLUME,
    "tolerations": {"key": None, "operator": None, "value": None, "effect": None, "tolerationSeconds": None},
    "nodeSelector": None, "affinity": None, "topologySpreadConstraints": None, "priorityClassName": None,
    "priority": None, "preemptionPolicy": None, "schedulerName": None, "runtimeClassName": None,
    "serviceAccountName": None, "automountServiceAccountToken": None, "imagePullSecrets": None,
    "securityContext": None, "restartPolicy": None, "terminationGracePeriodSeconds": None,
    "activeDeadlineSeconds": None, "dnsPolicy": None, "dnsConfig": None, "hostNetwork": None, "hostIPC": None,
    "hostPID": None, "hostname": None, "subdomain": None, "hostAliases": None, "nodeName": None,
    "shareProcessNamespace": None, "enableServiceLinks": None,
}  # fmt: skip
POD_TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}
PVC_SPEC = {"accessModes": None, "storageClassName": None, "resources": RESOURCES, "volumeMode": None,
            "volumeName": None, "selector": None, "dataSource": None, "dataSourceRef": None}  # fmt: skip

# --- KubeRay ray.io/v1 -------------------------------------------------------------------------------------
AUTOSCALER_OPTIONS = {
    "resources": RESOURCES, "image": None, "imagePullPolicy": None, "securityContext": None,
    "idleTimeoutSeconds": None, "upscalingMode": None, "version": None, "env": ENV_VAR, "envFrom": None,
    "volumeMounts": VOLUME_MOUNT,
}  # fmt: skip
HEAD_GROUP = {"template": POD_TEMPLATE, "headService": None, "enableIngress": None, "rayStartParams": None,
              "serviceType": None}  # fmt: skip
WORKER_GROUP = {
    "groupName": None, "replicas": None, "minReplicas": None, "maxReplicas": None, "idleTimeoutSeconds": None,
    "numOfHosts": None, "rayStartParams": None, "template": POD_TEMPLATE, "suspend": None,
    "scaleStrategy": {"workersToDelete": None},
}  # fmt: skip
RAY_CLUSTER_SPEC = {
    "headGroupSpec": HEAD_GROUP, "workerGroupSpecs": WORKER_GROUP, "rayVersion": None,
    "enableInTreeAutoscaling": None, "autoscalerOptions": AUTOSCALER_OPTIONS, "headServiceAnnotations": None,
    "gcsFaultToleranceOptions": None, "suspend": None, "managedBy": None,
}  # fmt: skip
RAY_JOB_SPEC = {
    "entrypoint": None, "runtimeEnvYAML": None, "jobId": None, "metadata": None, "submissionMode": None,
    "clusterSelector": None, "rayClusterSpec": RAY_CLUSTER_SPEC, "submitterPodTemplate": POD_TEMPLATE,
    "submitterConfig": {"backoffLimit": None}, "activeDeadlineSeconds": None, "backoffLimit": None,
    "shutdownAfterJobFinishes": None, "ttlSecondsAfterFinished": None, "suspend": None, "managedBy": None,
    "deletionStrategy": {"onSuccess": {"policy": None}, "onFailure": {"policy": None}}, "schedule": None,
    "entrypointNumCpus": None, "entrypointNumGpus": None, "entrypointResources": None,
}  # fmt: skip
RAY_SERVICE_SPEC = {
    "serveConfigV2": None, "rayClusterConfig": RAY_CLUSTER_SPEC, "serveService": None,
    "upgradeStrategy": {"type": None}, "excludeHeadPodFromServeSvc": None,
}  # fmt: skip


def _document(spec: dict) -> dict:
    return {"apiVersion": None, "kind": None, "metadata": OBJECT_META, "spec": spec}


ALLOWED = {
    "RayCluster": _document(RAY_CLUSTER_SPEC),
    "RayJob": _document(RAY_JOB_SPEC),
    "RayService": _document(RAY_SERVICE_SPEC),
    "PersistentVolumeClaim": _document(PVC_SPEC),
}
API_VERSIONS = {"RayCluster": "ray.io/v1", "RayJob": "ray.io/v1", "RayService": "ray.io/v1",
                "PersistentVolumeClaim": "v1"}  # fmt: skip

# The five RayJobs and what each must run (script, config), paths from the repository root.
JOBS = {
    "rayjob-synth.yaml": ("jobs/synth.py", "jobs/configs/cluster/synth.yaml"),
    "rayjob-screen.yaml": ("jobs/screen.py", "jobs/configs/cluster/screen.yaml"),
    "rayjob-sft.yaml": ("jobs/sft.py", "jobs/configs/cluster/sft.yaml"),
    "rayjob-eval.yaml": ("jobs/evaluate.py", "jobs/configs/cluster/eval.yaml"),
    "rayjob-pipeline.yaml": ("jobs/pipeline.py", "jobs/configs/cluster/pipeline.yaml"),
}
EXPECTED_FILES = {"raycluster.yaml", "storage.yaml", "rayservice.yaml", "launcher-aws.yaml", *JOBS}

# Strings that look like credentials (OpenAI, Hugging Face, AWS access key, GitHub, PEM private keys).
SECRET_PATTERNS = [r"\bsk-[A-Za-z0-9_-]{16,}", r"\bhf_[A-Za-z0-9]{20,}", r"\bAKIA[0-9A-Z]{16}\b",
                   r"\bgh[pousr]_[A-Za-z0-9]{20,}", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"]  # fmt: skip


def yaml_files() -> list[Path]:
    return sorted(CLUSTER.glob("*.yaml"))


def documents() -> list[tuple[str, dict]]:
    """(label, document) for every Kubernetes document in cluster/*.yaml; label is 'FILE#INDEX Kind/name'."""
    found = []
    for path in yaml_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and "kind" in doc:
                found.append((f"{path.name}#{i} {doc['kind']}/{doc.get('metadata', {}).get('name')}", doc))
    return found


def of_kind(kind: str) -> list[tuple[str, dict]]:
    return [(label, doc) for label, doc in documents() if doc["kind"] == kind]


def unknown_fields(value, allowed, path: str = "") -> list[str]:
    """Dotted paths (lists as [i]) of the keys in `value` that `allowed` does not list, looking as deep as
    `allowed` goes (None: not looked into)."""
    if allowed is None:
        return []
    if isinstance(value, list):
        return [bad for i, item in enumerate(value) for bad in unknown_fields(item, allowed, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path} (a mapping was expected, not {type(value).__name__})"]
    bad = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        bad += [where] if key not in allowed else unknown_fields(item, allowed[key], where)
    return bad


def field_problems(label: str, doc: dict) -> list[str]:
    """What is wrong with a document's field names (and apiVersion), each line naming the document."""
    kind = doc.get("kind")
    if kind not in ALLOWED:
        return [f"{label}: no allowlist for kind {kind!r}"]
    problems = [f"{label}: unknown field {path}" for path in unknown_fields(doc, ALLOWED[kind])]
    if doc.get("apiVersion") != API_VERSIONS[kind]:
        problems.append(f"{label}: apiVersion {doc.get('apiVersion')!r}, expected {API_VERSIONS[kind]!r}")
    return problems


def ray_cluster_specs() -> list[tuple[str, dict]]:
    """Every RayCluster spec in cluster/: the RayCluster's, the RayService's, any RayJob's inline one."""
    specs = [(label, doc["spec"]) for label, doc in of_kind("RayCluster")]
    specs += [(label, doc["spec"]["rayClusterConfig"]) for label, doc in of_kind("RayService")]
    specs += [(label, doc["spec"]["rayClusterSpec"]) for label, doc in of_kind("RayJob")
              if "rayClusterSpec" in doc["spec"]]  # fmt: skip
    return specs


def pod_templates() -> list[tuple[str, dict]]:
    """(label with group, pod template) of every head and worker group in cluster/."""
    found = []
    for label, spec in ray_cluster_specs():
        found.append((f"{label} head", spec["headGroupSpec"]["template"]))
        found += [(f"{label} {group['groupName']}", group["template"]) for group in spec.get("workerGroupSpecs", [])]
    return found


def gpus(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def launcher() -> dict:
    return yaml.safe_load((CLUSTER / "launcher-aws.yaml").read_text())


# --- tests -------------------------------------------------------------------------------------------------


def test_every_yaml_parses():
    """Every cluster/*.yaml parses (all its documents), each document is a mapping, and every file the
    README lists is there."""
    names = {path.name for path in yaml_files()}
    assert EXPECTED_FILES <= names, f"missing in cluster/: {sorted(EXPECTED_FILES - names)}"
    for path in yaml_files():
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs, f"{path.name}: no document"
        for i, doc in enumerate(docs):
            assert isinstance(doc, dict), f"{path.name}#{i}: not a mapping ({type(doc).__name__})"
        assert path.read_text().startswith("#"), f"{path.name}: should start with a comment saying what it is"


@pytest.mark.parametrize("label,doc", documents(), ids=[label for label, _ in documents()])
def test_fields_are_in_the_allowlist(label, doc):
    """Each KubeRay / Kubernetes document uses only field names its kind's allowlist knows."""
    problems = field_problems(label, doc)
    assert not problems, "\n".join(problems)


def test_allowlist_catches_a_misspelled_field():
    """The field check reports a misspelled key with the document and its dotted path, at any depth."""
    label, job = of_kind("RayJob")[0]
    assert field_problems(label, job) == []
    bad = copy.deepcopy(job)
    bad["spec"]["entrypont"] = bad["spec"].pop("entrypoint")
    assert field_problems(label, bad) == [f"{label}: unknown field spec.entrypont"]

    label, service = of_kind("RayService")[0]
    bad = copy.deepcopy(service)
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["volumeMount"] = []
    bad["spec"]["rayClusterConfig"]["headGroupSpec"]["minReplicas"] = 0  # a worker-group field, one level off
    new = set(field_problems(label, bad)) - set(field_problems(label, service))
    assert new == {
        f"{label}: unknown field spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].volumeMount",
        f"{label}: unknown field spec.rayClusterConfig.headGroupSpec.minReplicas",
    }


@pytest.mark.parametrize("name", sorted(JOBS))
def test_rayjob_runs_an_existing_script_with_an_existing_config(name):
    """Each RayJob's entrypoint is `python jobs/<X>.py --config jobs/configs/cluster/<Y>.yaml`, and both files
    exist (paths from the repository root)."""
    (label, job), = [(label, doc) for label, doc in of_kind("RayJob") if label.startswith(f"{name}#")]
    words = shlex.split(job["spec"]["entrypoint"])
    script, config = JOBS[name]
    assert words == ["python", script, "--config", config], f"{label}: entrypoint {job['spec']['entrypoint']!r}"
    assert (REPO / script).is_file(), f"{label}: {script} does not exist"
    assert (REPO / config).is_file(), f"{label}: {config} does not exist"


def test_rayjobs_run_on_the_raycluster():
    """Every RayJob selects the RayCluster of cluster/raycluster.yaml (clusterSelector), so it leaves out the
    fields that delete a cluster the RayJob created; it has a deadline, a retry limit, a submission mode and
    a runtime env Ray accepts, whose working_dir is the repository in the image."""
    from ray.runtime_env import RuntimeEnv

    (_, cluster), = of_kind("RayCluster")
    for label, job in of_kind("RayJob"):
        spec = job["spec"]
        assert spec.get("clusterSelector") == {"ray.io/cluster": cluster["metadata"]["name"]}, label
        for field in ("rayClusterSpec", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished"):
            assert field not in spec, f"{label}: {field} does not belong with clusterSelector"
        assert spec.get("submissionMode") in ("K8sJobMode", "HTTPMode"), label
        assert isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] > 0, label
        assert isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] >= 0, label
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        RuntimeEnv(**env)  # raises on a field or URI Ray does not accept
        assert env["working_dir"] == f"local://{IMAGE_REPO_DIR}", label


def test_rayservice_serves_the_atheus_app():
    """The RayService's serveConfigV2 is a valid Ray Serve config with one application at `/`:
    atheus_ray.serve.app:app_builder (a module of this repository) with a config file that exists."""
    from ray.serve.schema import ServeDeploySchema

    (label, service), = of_kind("RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)  # Ray's own schema for serve configs
    (app,) = serve_config["applications"]
    module, _, attribute = app["import_path"].partition(":")
    assert (module, attribute) == ("atheus_ray.serve.app", "app_builder"), f"{label}: {app['import_path']}"
    assert (REPO / "atheus_ray/serve/app.py").is_file(), f"{label}: atheus_ray/serve/app.py does not exist"
    assert app["route_prefix"] == "/", label
    assert app["runtime_env"]["working_dir"] == f"local://{IMAGE_REPO_DIR}", label
    assert (REPO / app["args"]["config"]).is_file(), f"{label}: {app['args']['config']} does not exist"


def test_heads_run_no_work_and_gpu_groups_start_at_zero():
    """In every RayCluster spec: autoscaling on, the head has num-cpus "0" and no GPU, every worker group asks
    for GPUs and starts at 0 pods; rayStartParams values are strings (a Kubernetes map of strings)."""
    specs = ray_cluster_specs()
    assert specs
    for label, spec in specs:
        assert spec.get("enableInTreeAutoscaling") is True, label
        head = spec["headGroupSpec"]
        assert head["rayStartParams"].get("num-cpus") == "0", f"{label}: the head must run no work"
        assert all(gpus(c) == 0 for c in head["template"]["spec"]["containers"]), f"{label}: GPU on the head"
        assert spec.get("workerGroupSpecs"), label
        for group in [head, *spec["workerGroupSpecs"]]:
            assert all(isinstance(v, str) for v in group["rayStartParams"].values()), f"{label}: {group}"
        for group in spec["workerGroupSpecs"]:
            where = f"{label} {group['groupName']}"
            assert group["minReplicas"] == 0 and group.get("replicas", 0) == 0, f"{where}: must start at 0"
            assert group["maxReplicas"] >= 1, where
            assert all(gpus(c) > 0 for c in group["template"]["spec"]["containers"]), f"{where}: no GPU limit"


def test_every_pod_mounts_the_shared_volume_and_shm():
    """Every head and worker pod mounts the ReadWriteMany claim atheus-shared at /mnt/shared and a memory
    emptyDir at /dev/shm, in every container; storage.yaml declares that claim."""
    (label, claim), = of_kind("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == SHARED_CLAIM and claim["spec"]["accessModes"] == ["ReadWriteMany"], label
    for where, template in pod_templates():
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for container in template["spec"]["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
            shared, shm = mounts.get(SHARED_PATH, {}), mounts.get("/dev/shm", {})
            assert shared.get("persistentVolumeClaim", {}).get("claimName") == SHARED_CLAIM, f"{where}: {SHARED_PATH}"
            assert shm.get("emptyDir", {}).get("medium") == "Memory", f"{where}: /dev/shm"


def test_secrets_come_from_secret_key_refs():
    """An env var whose name looks secret (KEY, TOKEN, SECRET, PASSWORD) comes from a secretKeyRef, never a
    value; the cluster's pods get OPENAI_API_KEY (and an optional HF_TOKEN), the RayService's pods get
    ATHEUS_SERVE_TOKEN, each from the Secret the README tells how to create."""
    for where, template in pod_templates():
        for container in template["spec"]["containers"]:
            for var in container.get("env", []):
                if re.search(r"KEY|TOKEN|SECRET|PASSWORD", var["name"]):
                    assert "value" not in var and "secretKeyRef" in var.get("valueFrom", {}), f"{where}: {var}"

    def refs(template: dict) -> dict:
        (container,) = template["spec"]["containers"]
        return {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container.get("env", []) if "valueFrom" in v}

    for where, template in pod_templates():
        found = refs(template)
        if where.startswith("raycluster.yaml"):
            assert found["OPENAI_API_KEY"] == {"name": "openai-api-key", "key": "OPENAI_API_KEY"}, where
            assert found["HF_TOKEN"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": True}, where
        if where.startswith("rayservice.yaml"):
            assert found["ATHEUS_SERVE_TOKEN"] == {"name": "atheus-serve-token", "key": "ATHEUS_SERVE_TOKEN"}, where


def test_no_file_holds_a_key():
    """No file in cluster/ contains a literal that looks like a credential (sk-..., hf_..., AKIA..., a private
    key), and no document is a Secret. The patterns are first checked on a fake key."""
    fake = "sk-" + "a1B2" * 6  # built here so that this file holds no key-looking literal either
    assert any(re.search(p, f"OPENAI_API_KEY: {fake}") for p in SECRET_PATTERNS)
    for path in sorted(CLUSTER.iterdir()):
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not re.search(pattern, text), f"{path.name}: looks like a credential ({pattern})"
    for label, doc in documents():
        assert doc["kind"] != "Secret", f"{label}: create Secrets with kubectl, never in a file here"


def test_one_image_and_the_pinned_ray_version():
    """Every pod of the Kubernetes manifests runs the same image (the RayJobs' working_dir is inside it), every
    rayVersion is the Ray this project pins, and a stock rayproject image (before you put yours) has that
    version in its tag, here and in the launcher."""
    import ray

    images = {c["image"] for _, t in pod_templates() for c in t["spec"]["containers"]}
    assert len(images) == 1, f"pods run different images: {sorted(images)}"
    for image in images | {launcher()["docker"]["image"]}:
        if image.startswith("rayproject/"):
            assert image.split(":")[1].startswith(ray.__version__), f"{image}: not Ray {ray.__version__}"
    assert {spec["rayVersion"] for _, spec in ray_cluster_specs()} == {ray.__version__}


def test_launcher_validates_against_rays_schema():
    """cluster/launcher-aws.yaml validates against ray-schema.json of the installed ray (never copied here)."""
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher(), schema)


def test_launcher_passes_rays_own_checks():
    """Ray's launcher fills in its defaults and runs its own checks (as `ray up` does) without complaint.
    (ray.autoscaler._private is not a public API; ray is pinned in pyproject.toml.)"""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(launcher()))


def test_launcher_head_runs_no_work_and_gpu_nodes_start_at_zero():
    """The head node type advertises CPU 0 and no GPU; every node type with GPUs has min_workers 0, and there
    are GPU node types."""
    config = launcher()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), head
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types, "no node type with GPUs"
    for name, node_type in gpu_types.items():
        assert node_type.get("min_workers") == 0, f"{name}: min_workers must be 0"
