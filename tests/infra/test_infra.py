"""Offline checks of infra/: every manifest parses and has the fields its consumer needs.

No Docker engine or Kubernetes cluster here: YAML is validated against hand-written minimal
JSON schemas (KubeRay's CRD is not vendored), the Ray cluster config against Ray's own
schema and validator, the systemd units with configparser (and ``systemd-analyze`` when it is
installed), the Dockerfiles by their instructions. Commands that run ``groundzero index`` are
checked against the real CLI's options, so a renamed flag breaks this test, not a night's run.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

# -- minimal schemas ------------------------------------------------------------------

_META = {"type": "object", "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
         "properties": {"name": {"type": "string"}, "generateName": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
_CONTAINER = {"type": "object", "required": ["name", "image"],
              "properties": {"name": {"type": "string"}, "image": {"type": "string", "minLength": 1},
                             "resources": {"type": "object"}, "volumeMounts": {"type": "array"}}}
_POD_TEMPLATE = {"type": "object", "required": ["spec"],
                 "properties": {"spec": {"type": "object", "required": ["containers"],
                                         "properties": {"containers": {"type": "array", "minItems": 1,
                                                                       "items": _CONTAINER},
                                                        "volumes": {"type": "array"}}}}}
_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}  # KubeRay wants strings
_WORKER_GROUP = {"type": "object", "required": ["groupName", "replicas", "minReplicas", "maxReplicas",
                                                "rayStartParams", "template"],
                 "properties": {"groupName": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0},
                                "minReplicas": {"type": "integer", "minimum": 0},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE}}
RAYJOB = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"}, "metadata": _META,
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "properties": {
            "entrypoint": {"type": "string", "pattern": "groundzero index "},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "rayClusterSpec": {"type": "object", "required": ["headGroupSpec", "workerGroupSpecs"], "properties": {
                "rayVersion": {"type": "string"},
                "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                                  "properties": {"rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE}},
                "workerGroupSpecs": {"type": "array", "minItems": 1, "items": _WORKER_GROUP}}}}}}}
CRONJOB = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "batch/v1"}, "kind": {"const": "CronJob"}, "metadata": _META,
        "spec": {"type": "object", "required": ["schedule", "jobTemplate"], "properties": {
            "schedule": {"type": "string"}, "timeZone": {"type": "string"},
            "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
            "jobTemplate": {"type": "object", "required": ["spec"], "properties": {"spec": {
                "type": "object", "required": ["template"], "properties": {"template": {
                    "type": "object", "required": ["spec"], "properties": {"spec": {
                        "type": "object", "required": ["containers", "restartPolicy"],
                        "properties": {"restartPolicy": {"enum": ["Never", "OnFailure"]},
                                       "containers": {"type": "array", "minItems": 1, "items": _CONTAINER}}}}}}}}}}}}}
OTHER = {"type": "object", "required": ["apiVersion", "kind", "metadata"],
         "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _META}}
SCHEMAS = {"RayJob": RAYJOB, "CronJob": CRONJOB}


def k8s_docs() -> dict[str, list[dict]]:
    out = {}
    for p in sorted((INFRA / "k8s").glob("*.yaml")):
        out[p.name] = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
    return out


def find(docs: list[dict], kind: str) -> dict:
    [d] = [d for d in docs if d["kind"] == kind]
    return d


# -- cron -------------------------------------------------------------------------------

_CRON_FIELDS = [(0, 59, {}), (0, 23, {}), (1, 31, {}),
                (1, 12, {m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}),
                (0, 7, {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])})]
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def valid_cron(expr: str) -> bool:
    """A standard 5-field cron expression (what Kubernetes CronJob accepts), or a macro."""
    if expr.strip() in _CRON_MACROS:
        return True
    fields = expr.split()
    if len(fields) != 5:
        return False
    for field, (lo, hi, names) in zip(fields, _CRON_FIELDS):
        for item in field.split(","):
            m = re.fullmatch(r"(\*|\?|(\w+)(?:-(\w+))?)(?:/(\d+))?", item)
            if not m:
                return False
            if m.group(4) is not None and int(m.group(4)) < 1:
                return False
            for v in (m.group(2), m.group(3)):
                if v is None:
                    continue
                n = names.get(v.upper(), int(v) if v.isdigit() else None)
                if n is None or not lo <= n <= hi:
                    return False
    return True


def test_cron_validator():
    for ok in ("0 2 * * *", "*/15 * * * *", "0 2 * * MON-FRI", "30 1 1,15 * *", "@daily", "0 0 * JAN,JUL 0"):
        assert valid_cron(ok), ok
    for bad in ("61 2 * * *", "0 24 * * *", "0 2 * *", "0 2 0 * *", "0 2 * 13 *", "*/0 * * * *", "x 2 * * *"):
        assert not valid_cron(bad), bad


# -- kubernetes ---------------------------------------------------------------------------


def test_every_k8s_document_has_the_basics():
    docs = k8s_docs()
    assert {"rayjob.yaml", "nightly-cronjob.yaml", "storage.yaml"} <= set(docs)
    for name, ds in docs.items():
        assert ds, f"{name} is empty"
        for d in ds:
            jsonschema.validate(d, SCHEMAS.get(d["kind"], OTHER))
            if d["kind"] not in ("ServiceAccount", "Role", "RoleBinding"):
                assert "spec" in d, f"{name}: {d['kind']} without spec"


def _pods(rayjob: dict) -> dict[str, dict]:
    spec = rayjob["spec"]["rayClusterSpec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]})
    return pods


def test_rayjob_head_cpu_workers_and_gpu_embed_workers():
    job = find(k8s_docs()["rayjob.yaml"], "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"  # the head only drives
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    gpu = [n for n, g in groups.items()
           if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in g["template"]["spec"]["containers"])]
    cpu = [n for n in groups if n not in gpu]
    assert gpu == ["embed"] and cpu == ["decode"]
    embed = groups["embed"]["template"]["spec"]
    assert all(c["image"].endswith(":cuda") for c in embed["containers"])
    assert any(t.get("key") == "nvidia.com/gpu" for t in embed.get("tolerations", []))
    for name, pod in _pods(job).items():
        if name != "embed":
            assert all(c["image"].endswith(":cpu") for c in pod["containers"]), name
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}: mount {m['name']} has no volume"
    # the driver's paths are mounted where it runs: archive and index on the head, archive on decoders
    mounts = {n: {m["mountPath"] for c in p["containers"] for m in c.get("volumeMounts", [])} for n, p in _pods(job).items()}
    argv = index_command(job["spec"]["entrypoint"])
    assert argv[0].startswith("/archive") and argv[argv.index("--index") + 1].startswith("/index")
    assert {"/archive", "/index", "/models"} <= mounts["head"] and "/archive" in mounts["decode"]
    assert "/models" in mounts["embed"] and argv[argv.index("--device") + 1] == "cuda"
    # one embed actor per GPU the group can have at its largest
    assert int(argv[argv.index("--workers") + 1]) <= groups["embed"]["maxReplicas"]
    # PVCs the pods claim are defined in storage.yaml
    claims = {v["persistentVolumeClaim"]["claimName"] for p in _pods(job).values()
              for v in p.get("volumes", []) if "persistentVolumeClaim" in v}
    assert claims <= {d["metadata"]["name"] for d in k8s_docs()["storage.yaml"]}


def test_nightly_cronjob_submits_the_rayjob_once_a_night():
    docs = k8s_docs()["nightly-cronjob.yaml"]
    cron = find(docs, "CronJob")
    assert valid_cron(cron["spec"]["schedule"]) and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = " ".join(pod["containers"][0].get("command", []) + pod["containers"][0].get("args", []))
    assert "kubectl create -f /config/rayjob.yaml" in script and "SUCCEEDED" in script
    # it may create RayJobs: the service account's role says so
    assert pod["serviceAccountName"] == find(docs, "ServiceAccount")["metadata"]["name"]
    rules = find(docs, "Role")["rules"]
    assert any("ray.io" in r["apiGroups"] and "rayjobs" in r["resources"] and "create" in r["verbs"] for r in rules)
    binding = find(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == find(docs, "Role")["metadata"]["name"]
    # the RayJob it creates must not have a fixed name (a second night would collide)
    assert "generateName" in find(k8s_docs()["rayjob.yaml"], "RayJob")["metadata"]


# -- Ray cluster launcher -------------------------------------------------------------------


def test_ray_cluster_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((INFRA / "ray" / "cluster-aws.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "max_workers"):
        assert key in cfg, key
    validate_config(prepare_config(cfg))  # Ray's JSON schema and consistency checks, offline
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types and cfg["provider"]["type"] == "aws"
    assert types[cfg["head_node_type"]]["resources"].get("CPU") == 0  # the head only drives
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    gpu = [n for n, t in workers.items() if t["resources"].get("GPU")]
    assert gpu == ["gpu_embed"] and types["gpu_embed"]["docker"]["worker_image"].endswith(":cuda")
    assert cfg["docker"]["image"].endswith(":cpu") and "cpu_decode" in workers
    assert sum(t["min_workers"] for t in workers.values()) <= cfg["max_workers"]
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])


# -- systemd ----------------------------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    # systemd allows repeated keys (Environment=): not strict; '%' specifiers: no interpolation
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"),
                                   inline_comment_prefixes=None)
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string((INFRA / "systemd" / name).read_text())
    return cp


def test_systemd_service_and_timer():
    svc, timer = _unit("groundzero-nightly.service"), _unit("groundzero-nightly.timer")
    assert svc["Service"]["Type"] == "oneshot"
    argv = index_command(svc["Service"]["ExecStart"])
    assert argv[0] == "${GZ_ARCHIVE}" and "--index" in argv
    assert "3" in svc["Service"]["SuccessExitStatus"].split()  # some files failed: still a success
    assert svc["Service"]["KillSignal"] == "SIGINT"  # stop = publish what is finished
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "groundzero-nightly.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    for name in ("groundzero-nightly.service", "groundzero-nightly.timer"):
        for line in (INFRA / "systemd" / name).read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                assert " #" not in line, f"{name}: systemd has no trailing comments: {line}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_units():
    r = subprocess.run(["systemd-analyze", "calendar", _unit("groundzero-nightly.timer")["Timer"]["OnCalendar"]],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "verify", "groundzero-nightly.service", "groundzero-nightly.timer"],
                       cwd=INFRA / "systemd", capture_output=True, text=True, check=False)
    # the only complaint allowed: the venv is not installed on this machine
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip() and "is not executable" not in ln]
    assert not complaints, complaints


# -- Dockerfiles ------------------------------------------------------------------------------


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in (INFRA / name).read_text().splitlines()
                                         if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln.strip() else "")
            for ln in text.splitlines() if ln.strip()]


def _packages() -> list[str]:
    """The repository folders pyproject.toml ships: the [tool.setuptools.package-dir] targets, top level."""
    import tomllib

    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return sorted({d.split("/")[0] for d in dirs.values()})


def _torch_pin() -> str:
    [pin] = [ln for ln in (REPO / "constraints.txt").read_text().splitlines() if ln.startswith("torch==")]
    return pin


@pytest.mark.parametrize("name, base, wheels", [
    ("Dockerfile", r"python:3\.(1[0-9])-slim", "download.pytorch.org/whl/cpu"),
    ("Dockerfile.cuda", r"nvidia/cuda:12\.\d+\.\d+-[a-z-]*runtime-ubuntu\d+\.04", "download.pytorch.org/whl/cu12"),
])
def test_dockerfiles_build_the_package_on_the_right_base(name, base, wheels):
    ins = instructions(name)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in ins if k == "ARG" and "=" in a}
    [frm] = [a for k, a in ins if k == "FROM"]
    frm = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], frm)
    assert re.fullmatch(base, frm), frm
    run = " ".join(a for k, a in ins if k == "RUN")
    run = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), run)
    assert "ffmpeg" in run and "wget" in run  # decoding; KubeRay's health probes
    assert f"pip install --no-cache-dir {_torch_pin()} --index-url https://{wheels}" in run
    assert "PIP_CONSTRAINT=constraints.txt pip install --no-cache-dir ." in run
    copied = {a.split()[0] for k, a in ins if k == "COPY"}
    assert set(_packages()) <= copied and {"pyproject.toml", "constraints.txt"} <= set(
        " ".join(a for k, a in ins if k == "COPY").split())
    assert ("USER", "groundzero") in ins and ("ENTRYPOINT", '["groundzero"]') in ins


# -- commands that run groundzero ------------------------------------------------------------


def index_command(cmdline: str) -> list[str]:
    """The arguments after ``groundzero index`` in a shell / ExecStart line, checked against the CLI."""
    import typer

    from groundzero.cli.main import app

    words = shlex.split(cmdline.replace("\n", " "))
    start = next(i for i, w in enumerate(words) if w.endswith("groundzero") and words[i + 1] == "index") + 2
    argv = []
    for w in words[start:]:
        if w in ("||", "&&", ";", "|"):
            break
        argv.append(w)
    options = {o for p in typer.main.get_command(app).commands["index"].params for o in p.opts}
    unknown = [w for w in argv if w.startswith("-") and w.split("=")[0] not in options]
    assert not unknown, f"groundzero index has no option {unknown} (in: {cmdline.strip()})"
    return argv


def test_readme_documents_every_infra_file():
    readme = (INFRA / "README.md").read_text()
    for p in INFRA.rglob("*"):
        if p.is_file() and p.name != "README.md":
            assert str(p.relative_to(INFRA)) in readme, f"infra/README.md does not mention {p.relative_to(INFRA)}"
