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
VOLUME_MOUNT = {
    "name": None,
    "mountPath": None,
    "readOnly": None,
    "subPath": None,
    "subPathExpr": None,
    "mountPropagation": None,
}
CONTAINER = {
    "name": None,
    "image": None,
    "imagePullPolicy": None,
    "command": None,
    "args": None,
    "workingDir": None,
    "env": ENV_VAR,
    "envFrom": None,
    "resources": RESOURCES,
    "volumeMounts": VOLUME_MOUNT,
    "volumeDevices": None,
    "ports": {"name": None, "containerPort": None, "protocol": None, "hostIP": None, "hostPort": None},
    "lifecycle": None,
    "livenessProbe": None,
    "readinessProbe": None,
    "startupProbe": None,
    "securityContext": None,
    "stdin": None,
    "stdinOnce": None,
    "tty": None,
    "terminationMessagePath": None,
    "terminationMessagePolicy": None,
}
VOLUME = {
    "name": None,
    "persistentVolumeClaim": {"claimName": None, "readOnly": None},
    "emptyDir": {"medium": None, "sizeLimit": None},
    "configMap": None,
    "secret": None,
    "hostPath": None,
    "nfs": None,
    "csi": None,
    "projected": None,
    "ephemeral": None,
    "downwardAPI": None,
}
POD_SPEC = {
    "containers": CONTAINER,
    "initContainers": CONTAINER,
    "volumes": VOLUME,
    "tolerations": {"key": None, "operator": None, "value": None, "effect": None, "tolerationSeconds": None},
    "nodeSelector": None,
    "affinity": None,
    "topologySpreadConstraints": None,
    "priorityClassName": None,
    "priority": None,
    "preemptionPolicy": None,
    "schedulerName": None,
    "runtimeClassName": None,
    "serviceAccountName": None,
    "automountServiceAccountToken": None,
    "imagePullSecrets": None,
    "securityContext": None,
    "restartPolicy": None,
    "terminationGracePeriodSeconds": None,
    "activeDeadlineSeconds": None,
    "dnsPolicy": None,
    "dnsConfig": None,
    "hostNetwork": None,
    "hostIPC": None,
    "hostPID": None,
    "hostname": None,
    "subdomain": None,
    "hostAliases": None,
    "nodeName": None,
    "shareProcessNamespace": None,
    "enableServiceLinks": None,
}
POD_TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}
PVC_SPEC = {
    "accessModes": None,
    "storageClassName": None,
    "resources": RESOURCES,
    "volumeMode": None,
    "volumeName": None,
    "selector": None,
    "dataSource": None,
    "dataSourceRef": None,
}

# --- KubeRay ray.io/v1 -------------------------------------------------------------------------------------
AUTOSCALER_OPTIONS = {
    "resources": RESOURCES,
    "image": None,
    "imagePullPolicy": None,
    "securityContext": None,
    "idleTimeoutSeconds": None,
    "upscalingMode": None,
    "version": None,
    "env": ENV_VAR,
    "envFrom": None,
    "volumeMounts": VOLUME_MOUNT,
}
HEAD_GROUP = {
    "template": POD_TEMPLATE,
    "headService": None,
    "enableIngress": None,
    "rayStartParams": None,
    "serviceType": None,
}
WORKER_GROUP = {
    "groupName": None,
    "replicas": None,
    "minReplicas": None,
    "maxReplicas": None,
    "idleTimeoutSeconds": None,
    "numOfHosts": None,
    "rayStartParams": None,
    "template": POD_TEMPLATE,
    "suspend": None,
    "scaleStrategy": {"workersToDelete": None},
}
RAY_CLUSTER_SPEC = {
    "headGroupSpec": HEAD_GROUP,
    "workerGroupSpecs": WORKER_GROUP,
    "rayVersion": None,
    "enableInTreeAutoscaling": None,
    "autoscalerOptions": AUTOSCALER_OPTIONS,
    "headServiceAnnotations": None,
    "gcsFaultToleranceOptions": None,
    "suspend": None,
    "managedBy": None,
}
RAY_JOB_SPEC = {
    "entrypoint": None,
    "runtimeEnvYAML": None,
    "jobId": None,
    "metadata": None,
    "submissionMode": None,
    "clusterSelector": None,
    "rayClusterSpec": RAY_CLUSTER_SPEC,
    "submitterPodTemplate": POD_TEMPLATE,
    "submitterConfig": {"backoffLimit": None},
    "activeDeadlineSeconds": None,
    "backoffLimit": None,
    "shutdownAfterJobFinishes": None,
    "ttlSecondsAfterFinished": None,
    "suspend": None,
    "managedBy": None,
    "deletionStrategy": {"onSuccess": {"policy": None}, "onFailure": {"policy": None}},
    "schedule": None,
    "entrypointNumCpus": None,
    "entrypointNumGpus": None,
    "entrypointResources": None,
}
RAY_SERVICE_SPEC = {
    "serveConfigV2": None,
    "rayClusterConfig": RAY_CLUSTER_SPEC,
    "serveService": None,
    "upgradeStrategy": {"type": None},
    "excludeHeadPodFromServeSvc": None,
}


def _document(spec: dict) -> dict:
    return {"apiVersion": None, "kind": None, "metadata": OBJECT_META, "spec": spec}


ALLOWED = {
    "RayCluster": _document(RAY_CLUSTER_SPEC),
    "RayJob": _document(RAY_JOB_SPEC),
    "RayService": _document(RAY_SERVICE_SPEC),
    "PersistentVolumeClaim": _document(PVC_SPEC),
}
API_VERSIONS = {
    "RayCluster": "ray.io/v1",
    "RayJob": "ray.io/v1",
    "RayService": "ray.io/v1",
    "PersistentVolumeClaim": "v1",
}

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
SECRET_PATTERNS = [
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
]


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
    specs += [
        (label, doc["spec"]["rayClusterSpec"]) for label, doc in of_kind("RayJob") if "rayClusterSpec" in doc["spec"]
    ]
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


def group_resources(group: dict) -> dict[str, float]:
    """The Ray resources one pod of a head or worker group advertises: CPU (num-cpus, else the container's CPU
    limit), GPU (the nvidia.com/gpu limit) and the custom ones of rayStartParams.resources, which KubeRay takes
    as a JSON map inside a quoted string ('"{\\"gen\\": 4}"')."""
    (container,) = group["template"]["spec"]["containers"]
    params = group.get("rayStartParams", {})
    cpu = params.get("num-cpus", str(container.get("resources", {}).get("limits", {}).get("cpu", "0")))
    found = {"CPU": float(cpu), "GPU": float(gpus(container))}
    if "resources" in params:
        text = params["resources"]
        assert text.startswith('"') and text.endswith('"'), f"{group.get('groupName')}: resources must be quoted"
        found.update(json.loads(text[1:-1].replace('\\"', '"')))
    return found


def container_env(container: dict) -> dict[str, str]:
    return {v["name"]: v.get("value") for v in container.get("env", [])}


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
    ((label, job),) = [(label, doc) for label, doc in of_kind("RayJob") if label.startswith(f"{name}#")]
    words = shlex.split(job["spec"]["entrypoint"])
    script, config = JOBS[name]
    assert words == ["python", script, "--config", config], f"{label}: entrypoint {job['spec']['entrypoint']!r}"
    assert (REPO / script).is_file(), f"{label}: {script} does not exist"
    assert (REPO / config).is_file(), f"{label}: {config} does not exist"


def rayjob_problems(label: str, spec: dict) -> list[str]:
    """What KubeRay (1.4 to 1.7, the versions cluster/README.md supports) would refuse or do wrong with a RayJob
    spec that selects a running RayCluster (clusterSelector):
    - backoffLimit: 1.6+ rejects the spec (ValidationFailed, kuberay PR #4527); 1.4-1.5 delete the selected
      RayCluster on the first retry (issue #4516), killing every other job on it;
    - rayClusterSpec: one or the other, never both;
    - shutdownAfterJobFinishes, ttlSecondsAfterFinished: they delete a cluster the RayJob created, and this one
      created none (1.6+ rejects shutdownAfterJobFinishes with clusterSelector)."""
    if "clusterSelector" not in spec:
        return []
    return [
        f"{label}: {field} must not be set with clusterSelector"
        for field in ("backoffLimit", "rayClusterSpec", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished")
        if field in spec
    ]


def test_rayjob_rules_catch_backoff_limit_with_cluster_selector():
    """The rules report a RayJob that sets backoffLimit (or a cluster-lifetime field) next to clusterSelector,
    and none of this repository's RayJobs does."""
    label, job = of_kind("RayJob")[0]
    assert rayjob_problems(label, job["spec"]) == []
    bad = {**job["spec"], "backoffLimit": 1, "shutdownAfterJobFinishes": True}
    assert rayjob_problems(label, bad) == [
        f"{label}: backoffLimit must not be set with clusterSelector",
        f"{label}: shutdownAfterJobFinishes must not be set with clusterSelector",
    ]
    for label, job in of_kind("RayJob"):
        assert rayjob_problems(label, job["spec"]) == []


def test_rayjobs_run_on_the_raycluster():
    """Every RayJob selects the RayCluster of cluster/raycluster.yaml (clusterSelector); it has a deadline, a
    submission mode and a runtime env Ray accepts, whose working_dir is the repository in the image."""
    from ray.runtime_env import RuntimeEnv

    ((_, cluster),) = of_kind("RayCluster")
    for label, job in of_kind("RayJob"):
        spec = job["spec"]
        assert spec.get("clusterSelector") == {"ray.io/cluster": cluster["metadata"]["name"]}, label
        assert spec.get("submissionMode") in ("K8sJobMode", "HTTPMode"), label
        assert isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] > 0, label
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        RuntimeEnv(**env)  # raises on a field or URI Ray does not accept
        assert env["working_dir"] == f"local://{IMAGE_REPO_DIR}", label


def test_rayservice_serves_the_atheus_app():
    """The RayService's serveConfigV2 is a valid Ray Serve config with one application at `/`:
    atheus_ray.serve.app:app_builder (a module of this repository) with a config file that exists."""
    from ray.serve.schema import ServeDeploySchema

    ((label, service),) = of_kind("RayService")
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
    """In every RayCluster spec: autoscaling on, the head has num-cpus "0" and no GPU, every GPU worker group
    starts at 0 pods, and a group without GPUs (the RayService's ingress pod) is small; rayStartParams values
    are strings (a Kubernetes map of strings)."""
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
            assert group["maxReplicas"] >= 1, where
            if all(gpus(c) > 0 for c in group["template"]["spec"]["containers"]):
                assert group["minReplicas"] == 0 and group.get("replicas", 0) == 0, f"{where}: must start at 0"
            else:
                assert group_resources(group)["CPU"] <= 4 and group["maxReplicas"] == 1, (
                    f"{where}: a CPU group is small"
                )
        assert any(gpus(c) > 0 for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]), label


def test_every_pod_mounts_the_shared_volume_and_shm():
    """Every head and worker pod mounts the ReadWriteMany claim atheus-shared at /mnt/shared and a memory
    emptyDir at /dev/shm, in every container; storage.yaml declares that claim."""
    ((label, claim),) = of_kind("PersistentVolumeClaim")
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
    value; the cluster's head gets OPENAI_API_KEY (its GPU pods do not), every cluster pod an optional
    HF_TOKEN, the RayService's pods ATHEUS_SERVE_TOKEN, each from the Secret the README tells how to create."""
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
            # the judge runs in the evaluation's driver, on the head: the key is there and nowhere else
            if where.endswith(" head"):
                assert found["OPENAI_API_KEY"] == {"name": "openai-api-key", "key": "OPENAI_API_KEY"}, where
            else:
                assert "OPENAI_API_KEY" not in found, f"{where}: the OpenAI key belongs on the head only"
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


# --- what the cluster configs ask of the manifests ---------------------------------------------------------
CLUSTER_CONFIGS = REPO / "jobs" / "configs" / "cluster"
RAY_BUILTIN = {"CPU", "GPU", "memory", "object_store_memory"}


def _cluster_config(name: str) -> dict:
    return yaml.safe_load((CLUSTER_CONFIGS / name).read_text())


def demands() -> list[tuple[str, dict[str, float], str]]:
    """(what, resources one node must hold at once, which manifest) for every placement the cluster configs ask
    for: a vLLM replica's STRICT_PACKed bundles (tp x pp GPUs with engine.resources each), all SFT workers
    STRICT_PACKed together, an evaluation candidate's replica, the RayService's replicas and its ingress."""
    found = []
    for name in ("synth.yaml", "screen.yaml"):
        engine = _cluster_config(name)["engine"]
        n = engine.get("tensor_parallel_size", 1) * engine.get("pipeline_parallel_size", 1)
        found.append(
            (
                f"{name} engine replica",
                {"GPU": n, **{k: v * n for k, v in engine.get("resources", {}).items()}},
                "raycluster.yaml",
            )
        )
    sft = _cluster_config("sft.yaml")
    w = sft["num_workers"]
    found.append(
        (
            "sft.yaml workers",
            {"GPU": w, **{k: v * w for k, v in sft.get("resources_per_worker", {}).items()}},
            "raycluster.yaml",
        )
    )
    found.append(
        (
            "eval.yaml candidate",
            {"GPU": 1, **_cluster_config("eval.yaml")["serve"].get("resources", {})},
            "raycluster.yaml",
        )
    )
    serve = _cluster_config("serve.yaml")
    tp = max(m.get("tensor_parallel_size", 1) for m in serve["models"])
    found.append(
        (
            "serve.yaml replica",
            {"GPU": tp, **{k: v * tp for k, v in serve["serve"].get("resources", {}).items()}},
            "rayservice.yaml",
        )
    )
    found.append(
        (
            "serve.yaml ingress",
            {"CPU": serve["serve"]["ingress_cpus"], **serve["serve"].get("ingress_resources", {})},
            "rayservice.yaml",
        )
    )
    return found


def placement_problems(demand: dict[str, float], groups: dict[str, dict[str, float]], what: str) -> list[str]:
    """Empty when some group's one node holds all of `demand` and every custom resource in it is advertised by
    that group only where it is meant to pin work (a resource no group advertises never schedules)."""
    custom = set(demand) - RAY_BUILTIN
    if not custom:
        return [f"{what}: asks for no custom resource, so nothing pins it to its worker group"]
    fits = [name for name, have in groups.items() if all(have.get(k, 0) >= v for k, v in demand.items())]
    return [] if fits else [f"{what}: no worker group holds {demand} on one node (groups: {groups})"]


def _groups(manifest: str) -> dict[str, dict[str, float]]:
    (spec,) = [s for label, s in ray_cluster_specs() if label.startswith(f"{manifest}#")]
    return {g["groupName"]: group_resources(g) for g in spec["workerGroupSpecs"]}


@pytest.mark.parametrize("what,demand,manifest", demands(), ids=[d[0] for d in demands()])
def test_every_placement_the_configs_ask_for_fits_one_node_of_its_group(what, demand, manifest):
    """Work is pinned to its node pool by custom resources (engine.resources, train.resources_per_worker,
    serve.resources, serve.ingress_resources), and the pinned group holds a whole replica (or all SFT
    workers) on one pod: FSDP never spans generation pods, a tensor-parallel replica never splits."""
    problems = placement_problems(demand, _groups(manifest), what)
    assert not problems, "\n".join(problems)
    if manifest == "raycluster.yaml":  # the launcher's node types offer the same
        types = {n: t["resources"] for n, t in launcher()["available_node_types"].items() if n != "head"}
        problems = placement_problems(demand, types, f"launcher-aws.yaml: {what}")
        assert not problems, "\n".join(problems)


def test_placement_rules_catch_unpinned_and_unplaceable_work():
    """The rule reports work that asks for no custom resource, and work no single pod can hold."""
    groups = {"gpu-gen": {"CPU": 40, "GPU": 4, "gen": 4}, "gpu-train": {"CPU": 88, "GPU": 8, "train": 8}}
    assert placement_problems({"GPU": 8, "train": 8}, groups, "sft") == []
    assert placement_problems({"GPU": 8}, groups, "sft") == [
        "sft: asks for no custom resource, so nothing pins it to its worker group"
    ]
    assert placement_problems({"GPU": 16, "train": 16}, groups, "sft")[0].startswith("sft: no worker group holds")
    assert placement_problems({"GPU": 2, "gen": 2, "train": 1}, groups, "mixed")[0].startswith("mixed: no worker")


def test_the_rayservice_can_scale_its_gpu_pods_to_zero():
    """The RayService's models scale to zero (min_replicas 0) and its ingress has a CPU pod that is always up
    to live on (the head runs no work): otherwise the ingress would hold a GPU pod up forever."""
    serve = _cluster_config("serve.yaml")["serve"]
    assert serve["min_replicas"] == 0
    (spec,) = [s for label, s in ray_cluster_specs() if label.startswith("rayservice.yaml#")]
    holders = [
        g
        for g in spec["workerGroupSpecs"]
        if group_resources(g)["GPU"] == 0
        and g["minReplicas"] >= 1
        and group_resources(g)["CPU"] >= serve["ingress_cpus"]
        and all(group_resources(g).get(k, 0) >= v for k, v in serve["ingress_resources"].items())
    ]
    assert holders, "no always-up CPU group can hold the ingress"
    gpu_groups = [g for g in spec["workerGroupSpecs"] if group_resources(g)["GPU"] > 0]
    assert gpu_groups and not any(set(serve["ingress_resources"]) & set(group_resources(g)) for g in gpu_groups)


def test_pods_keep_models_on_the_shared_volume_and_request_their_disk():
    """Every pod sets HF_HOME on the shared volume (a 48 GB model downloaded once, not into each container), and
    every container requests and limits ephemeral-storage; the training group's TMPDIR (the Trainer's local
    checkpoints) is a mounted emptyDir within that request."""
    for where, template in pod_templates():
        for container in template["spec"]["containers"]:
            env = container_env(container)
            assert env.get("HF_HOME", "").startswith(SHARED_PATH + "/"), f"{where}: HF_HOME on {SHARED_PATH}"
            for kind in ("requests", "limits"):
                assert "ephemeral-storage" in container["resources"][kind], f"{where}: ephemeral-storage {kind}"
            if where.endswith("gpu-train"):
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert env.get("TMPDIR") in mounts, f"{where}: TMPDIR must be a mounted volume"
                volumes = {v["name"]: v for v in template["spec"]["volumes"]}
                assert "emptyDir" in volumes[mounts[env["TMPDIR"]]], where
    assert "-e HF_HOME=/mnt/shared/hf-cache" in " ".join(launcher()["docker"]["run_options"])


def test_launcher_nodes_get_credentials_and_a_current_gpu_image():
    """Every node type names its IAM instance profile (Ray attaches its default to the head only: a worker
    without one cannot fetch its secrets, fails setup and is relaunched forever) and an ImageId (without one Ray
    picks an Ubuntu 18.04 / CUDA 11.2 DLAMI whose driver cannot run the cu128 image)."""
    from ray.autoscaler._private.aws.config import DEFAULT_AMI

    config = launcher()
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        assert node.get("IamInstanceProfile", {}).get("Name") or node.get("IamInstanceProfile", {}).get("Arn"), name
        image = node.get("ImageId", "")
        assert image.lower() not in ("", "latest_dlami") and image not in DEFAULT_AMI.values(), f"{name}: {image!r}"
        if node_type["resources"].get("GPU"):
            assert image.startswith("resolve:ssm:/aws/service/deeplearning/ami/x86_64/") and "18.04" not in image
            assert (
                node["IamInstanceProfile"]
                != config["available_node_types"]["head"]["node_config"]["IamInstanceProfile"]
            )
