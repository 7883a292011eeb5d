#!/usr/bin/env python3
"""Checks that the deployment files agree with the code and the configuration reference.

- Every MANDATE_* variable the files set is one mandate reads (src/server/config/mod.rs) and one
  docs/configuration.md documents; every OTEL_* variable is one the reference documents.
- The listening port is the same everywhere: MANDATE_LISTEN, the exposed and published ports,
  the container port, the probes, the Service target and the NetworkPolicy.
- Compose and Kubernetes run the same image; the data directory is the one the image uses.
- The probe paths are endpoints of the served API (openapi/openapi.json).

Prints each disagreement and exits 1 if there is any.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


config_source = (ROOT / "src/server/config/mod.rs").read_text()
known = set(re.findall(r'"(MANDATE_[A-Z_]+)"\s*=>', config_source))
reference = (ROOT / "docs/configuration.md").read_text()
documented = set(re.findall(r"`((?:MANDATE|OTEL)_[A-Z_]+)`", reference))
check(known, "no MANDATE_* variable found in src/server/config/mod.rs")
for name in sorted(known - documented - {"MANDATE_CONFIG"}):
    problems.append(f"{name} is read by mandate but not documented in docs/configuration.md")

spec = json.loads((ROOT / "openapi/openapi.json").read_text())
image = "mandate:latest"

# Dockerfile
dockerfile = (ROOT / "deploy/Dockerfile").read_text()
docker_env = dict(re.findall(r"\b((?:MANDATE|OTEL)_[A-Z_]+)=(\S+)", dockerfile))
exposed = [int(p) for p in re.findall(r"^EXPOSE (\d+)", dockerfile, re.M)]
listen_port = port_of(docker_env["MANDATE_LISTEN"])
check(exposed == [listen_port], f"Dockerfile EXPOSE {exposed} != MANDATE_LISTEN port {listen_port}")
data_dir = docker_env["MANDATE_DATA_DIR"]

# docker-compose.yml
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
service = compose["services"]["mandate"]
check(service.get("image") == image, f"compose mandate image {service.get('image')!r} != {image!r}")
check(service["build"]["dockerfile"] == "deploy/Dockerfile", "compose does not build deploy/Dockerfile")
compose_env = service["environment"]
check(port_of(compose_env["MANDATE_LISTEN"]) == listen_port, "compose MANDATE_LISTEN port differs from the image's")
published = [int(str(p).rsplit(":", 1)[1]) for p in service["ports"]]
check(published == [listen_port], f"compose publishes container ports {published}, mandate listens on {listen_port}")
check(any(str(v).endswith(":" + data_dir) for v in service["volumes"]), f"compose does not mount a volume at {data_dir}")
collector = (ROOT / "deploy/otel-collector.yaml")
check(collector.exists(), "deploy/otel-collector.yaml is missing")
if collector.exists():
    otel = yaml.safe_load(collector.read_text())
    endpoint = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    check(port_of(endpoint) == 4318, "the collector does not receive OTLP/HTTP on 4318")
    check("otel-collector" in compose["services"], "compose has no otel-collector service")

# Kubernetes
documents = [d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/mandate.yaml").read_text()) if d]
kinds = {d["kind"]: d for d in documents}
for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"]:
    check(kind in kinds, f"deploy/kubernetes/mandate.yaml has no {kind}")
config_map = kinds["ConfigMap"]["data"]
check(port_of(config_map["MANDATE_LISTEN"]) == listen_port, "ConfigMap MANDATE_LISTEN port differs from the image's")
pod = kinds["Deployment"]["spec"]["template"]["spec"]
check(kinds["Deployment"]["spec"]["replicas"] >= 2, "the Deployment runs fewer than 2 replicas")
k8s_env = set(config_map)
for container in pod.get("initContainers", []) + pod["containers"]:
    check(container["image"] == image, f"container {container['name']} runs {container['image']!r}, not {image!r}")
    k8s_env |= {e["name"] for e in container.get("env", [])}
    context = container.get("securityContext", {})
    check(context.get("readOnlyRootFilesystem") is True, f"container {container['name']} has a writable root filesystem")
main = pod["containers"][0]
check([p["containerPort"] for p in main["ports"]] == [listen_port], "the container port differs from MANDATE_LISTEN's")
for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
    check(main[probe]["httpGet"]["path"] == path, f"{probe} does not use {path}")
    check(path in spec["paths"], f"{path} is not an endpoint of the API")
check(pod["securityContext"].get("runAsNonRoot") is True, "the pod may run as root")
check(any(m["mountPath"] == data_dir for m in main["volumeMounts"]), f"nothing is mounted at {data_dir}")
ingress = [p["port"] for rule in kinds["NetworkPolicy"]["spec"]["ingress"] for p in rule["ports"]]
check(ingress == [listen_port], f"the NetworkPolicy admits {ingress}, mandate listens on {listen_port}")
check("/metrics" in spec["paths"], "/metrics is not an endpoint of the API")

# Every Secret key the pod reads is in the Secrets template.
secrets = {}
for document in yaml.safe_load_all((ROOT / "deploy/kubernetes/secrets.example.yaml").read_text()):
    if document and document["kind"] == "Secret":
        secrets[document["metadata"]["name"]] = set(document["stringData"])
for container in pod.get("initContainers", []) + pod["containers"]:
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            check(ref["key"] in secrets.get(ref["name"], set()),
                  f"{container['name']} reads secret {ref['name']}/{ref['key']}, not in secrets.example.yaml")
for volume in pod.get("volumes", []):
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        check(name in secrets, f"volume {volume['name']} mounts secret {name}, not in secrets.example.yaml")
key_paths = [p.split("=", 1)[1] for p in config_map["MANDATE_ROOT_KEYS"].split(",")]
mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
for path in key_paths:
    directory, file = path.rsplit("/", 1)
    volume = volumes.get(mounts.get(directory, ""), {})
    secret = volume.get("secret", {}).get("secretName")
    check(file in secrets.get(secret, set()), f"root key {path} is not a key of a mounted Secret")

# systemd
unit = (ROOT / "deploy/systemd/mandate.service").read_text()
systemd_env = set(re.findall(r"\b((?:MANDATE|OTEL)_[A-Z_]+)=", unit))
check(f"MANDATE_DATA_DIR={data_dir}" in unit, f"the systemd unit does not use {data_dir}")

used = {
    "deploy/Dockerfile": set(docker_env),
    "docker-compose.yml": set(compose_env),
    "deploy/kubernetes/mandate.yaml": k8s_env,
    "deploy/systemd/mandate.service": systemd_env,
}
for where, names in used.items():
    for name in sorted(names):
        if name.startswith("MANDATE_") and name not in known:
            problems.append(f"{where} sets {name}, which mandate does not read")
        if name not in documented:
            problems.append(f"{where} sets {name}, which docs/configuration.md does not document")

for problem in problems:
    print(f"inconsistent: {problem}")
if problems:
    sys.exit(1)
print(f"consistent: {sum(len(n) for n in used.values())} variables, port {listen_port}, image {image}, data dir {data_dir}")
