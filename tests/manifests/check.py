#!/usr/bin/env python3
"""Checks of everything that ships to a cluster (called by run.sh, which first
makes sure the tools exist).

  render     every kustomization under manifests/ and profiles/ renders with
             kustomize; a Component is rendered on top of the base
  schema     every rendered object validates (strict: unknown fields are
             errors) against the Kubernetes 1.30, 1.31, 1.32 and 1.33 schemas
             of kubernetes-validate; custom resources are skipped by name
  docker     hadolint has nothing to say about the Dockerfile; its bases are
             pinned; the image's root filesystem, assembled by tools/image/rootfs.sh (the Dockerfile's
             and make image's one step), holds a working parser and agent, no shell
  profiles   every profile compiles with apparmor_parser -Q against Debian
             12's kernel feature set, errors as file:line; every rule matters
             (profile_rules.py)
  properties the rendered YAML has the properties the issue asks for
  monitoring the alert rules (promtool check + test rules) and the Grafana dashboard (monitoring.py)
  mutations  each property check is shown to fail on a broken copy

Prints "ok"/"FAIL"/"SKIP" per check and ends with "N passed, M failed".
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

import kubernetes_validate
from kubernetes_validate import utils as kv_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_rules  # noqa: E402
import cel_policies  # noqa: E402
import gating_props  # noqa: E402
import monitoring  # noqa: E402

K8S_VERSIONS = ["1.30", "1.31", "1.32", "1.33"]
# Custom resources: kubernetes-validate ships only the built-in API's schemas.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "Prometheus Operator CRD, no schema in kubernetes-validate",
    ("argoproj.io/v1alpha1", "Application"): "Argo CD CRD, no schema in kubernetes-validate",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "Prometheus Operator CRD, no schema in kubernetes-validate (promtool checks its rules)",
}
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
AGENT = "apparmor-loader"
PROFILES_CM = "apparmor-loader-profiles"
CONFIG_CM = "apparmor-loader-config"
DEFAULT_LISTEN = "127.0.0.1:9741"
# Hosts the agent may listen on in a pod: the pod's IP (the node's on the host network) and loopback.
POD_IP_HOST = "$(POD_IP)"
LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


class Checker:
    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.quiet = quiet
        self.failures = []

    def ok(self, cond, msg):
        if cond:
            self.passed += 1
            if not self.quiet:
                print(f"ok   {msg}")
        else:
            self.failed += 1
            self.failures.append(msg)
            if not self.quiet:
                print(f"FAIL {msg}")
        return bool(cond)

    def skip(self, msg):
        self.skipped += 1
        if not self.quiet:
            print(f"SKIP {msg}")


# --------------------------------------------------------------------------- helpers

def kustomize_cmd():
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return ["kustomize", "build"]


def render(path):
    r = subprocess.run(kustomize_cmd() + [path], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [d for d in yaml.safe_load_all(r.stdout) if d], ""


def find(docs, kind, name=None):
    out = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    return out


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    return found[0] if len(found) == 1 else None


def profile_files(root):
    """The profile files in profiles/: everything but what the agent's directory scan also skips
    (dotfiles, editor leftovers, README, *.md, *.yaml such as kustomization.yaml)."""
    d = os.path.join(root, "profiles")
    return sorted(
        f for f in os.listdir(d)
        if os.path.isfile(os.path.join(d, f))
        and not f.startswith(".")
        and not f.endswith(("~", ".swp", ".md", ".yaml", ".yml"))
        and f != "README"
    )


def container(pod_spec, name):
    for c in pod_spec.get("containers", []):
        if c.get("name") == name:
            return c
    return None


def effective(pod_spec, c, key):
    """A securityContext field as the kubelet applies it: container wins over pod."""
    csc = c.get("securityContext") or {}
    if key in csc:
        return csc[key]
    return (pod_spec.get("securityContext") or {}).get(key)


def env_value(c, name):
    for e in c.get("env") or []:
        if e.get("name") == name:
            return e.get("value")
    return None


def probe_port(c, probe):
    port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def listen_addresses(c, config):
    """The agent's listen addresses as written (a flag, the environment or the config file; a comma-separated
    string or a YAML list), or the binary's default."""
    addr = env_value(c, "APPARMOR_LOADER_LISTEN") or (config or {}).get("listen")
    for a in c.get("args") or []:
        if a.startswith("--listen="):
            addr = a.split("=", 1)[1]
    if not addr:
        return [DEFAULT_LISTEN]
    items = addr if isinstance(addr, list) else str(addr).split(",")
    return [str(a).strip() for a in items if str(a).strip()]


def split_host_port(addr):
    host, _, port = addr.rpartition(":")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host, port


def listen_port(c, config):
    """The one port every listen address uses (None if they differ or one has none)."""
    ports = {split_host_port(a)[1] for a in listen_addresses(c, config)}
    if len(ports) != 1:
        return None
    port = ports.pop()
    return int(port) if port.isdigit() else None


def kustomizations(root):
    """Every directory holding a kustomization, with its kind."""
    out = []
    for top in ("manifests", "profiles"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        kind = (yaml.safe_load(fh) or {}).get("kind", "Kustomization")
                    out.append((os.path.relpath(dirpath, root), kind))
    return sorted(out)


# --------------------------------------------------------------------------- render + schema

def check_render(root, ck, tmp):
    rendered = {}
    for rel, kind in kustomizations(root):
        path = os.path.join(root, rel)
        if kind == "Component":
            # A Component cannot be built alone: build the base with it.
            overlay = tempfile.mkdtemp(dir=tmp)
            with open(os.path.join(overlay, "kustomization.yaml"), "w", encoding="utf-8") as f:
                yaml.safe_dump({
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(os.path.join(root, "manifests/base"), overlay)],
                    "components": [os.path.relpath(path, overlay)],
                }, f)
            docs, err = render(overlay)
            label = f"{rel} (Component, on top of manifests/base)"
        else:
            docs, err = render(path)
            label = rel
        if ck.ok(docs is not None and len(docs) > 0, f"render: kustomize builds {label}" + (f": {err}" if err else "")):
            rendered[rel] = docs
    return rendered


def check_schema(rendered, ck):
    supported = kv_utils.all_versions()
    for v in K8S_VERSIONS:
        ck.ok(any(kv_utils.major_minor(s) == v for s in supported),
              f"schema: kubernetes-validate {kubernetes_validate.__version__} ships the {v} schemas")
    skipped = set()
    for rel, docs in rendered.items():
        for v in K8S_VERSIONS:
            errors = []
            for d in docs:
                key = (d.get("apiVersion"), d.get("kind"))
                if key in CRD_KINDS:
                    skipped.add((rel, key))
                    continue
                try:
                    kubernetes_validate.validate(d, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    errors.append(f"{d['kind']}/{d['metadata']['name']}: {path}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    errors.append(f"{d['kind']}/{d['metadata']['name']}: {e.message}")
            ck.ok(not errors, f"schema: {rel} validates (strict) against Kubernetes {v}"
                  + ("" if not errors else ": " + "; ".join(errors)))
    for rel, (api, kind) in sorted(skipped):
        ck.skip(f"schema: {rel}: {kind} ({api}) not validated: {CRD_KINDS[(api, kind)]}")
    # The validator is really strict: the GA appArmorProfile field is unknown to 1.29.
    base = rendered.get("manifests/base") or []
    ds = one(base, "DaemonSet", AGENT)
    if ds:
        try:
            kubernetes_validate.validate(ds, "1.29", strict=True)
            rejected = False
        except kubernetes_validate.ValidationError as e:
            rejected = "appArmorProfile" in e.message
        ck.ok(rejected, "schema: the DaemonSet is rejected by the 1.29 schema (appArmorProfile is 1.30+), "
                        "so strict validation is really on")


# --------------------------------------------------------------------------- docker

def dockerfile_instructions(text):
    """(instruction, arguments, first line number) with continuations joined."""
    out, buf, start = [], "", None
    for n, line in enumerate(text.split("\n"), 1):
        if start is None:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1]
            continue
        buf += line
        instr, _, rest = buf.strip().partition(" ")
        out.append((instr.upper(), rest.strip(), start))
        buf, start = "", None
    return out


def agent_binary(root):
    """$APPARMOR_LOADER_BIN, else the newest of the builds in target/ (a stale
    build of an older source tree must not be the one tested)."""
    env = os.environ.get("APPARMOR_LOADER_BIN", "")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    cands = [
        os.path.join(root, "target", p, "apparmor-loader")
        for p in ("x86_64-unknown-linux-musl/release", "release", "debug")
    ]
    cands = [c for c in cands if os.path.isfile(c) and os.access(c, os.X_OK)]
    return max(cands, key=os.path.getmtime) if cands else None


def check_docker(root, ck, tmp):
    path = os.path.join(root, "Dockerfile")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    r = subprocess.run(["hadolint", "--no-color", path], capture_output=True, text=True, check=False)
    out = (r.stdout + r.stderr).strip()
    ck.ok(r.returncode == 0 and not out, "docker: hadolint reports nothing (no error, warning, info or style)"
          + (f": {out}" if out else ""))
    instrs = dockerfile_instructions(text)
    froms = [(a, n) for i, a, n in instrs if i == "FROM"]
    for arg, n in froms:
        image = [w for w in arg.split() if not w.startswith("--")][0]
        pinned = image == "scratch" or "@sha256:" in image or bool(re.search(r":[^:/]*\d+\.\d+[^:/]*$", image))
        ck.ok(pinned and "$" not in image,
              f"docker: Dockerfile:{n}: base {image} is pinned by digest or exact version tag, written literally")
    ck.ok(bool(froms) and froms[-1][0].split()[-1] == "scratch",
          "docker: the final stage is FROM scratch (no shell or tools the agent does not run)")
    ck.ok(("ENTRYPOINT", '["apparmor-loader"]') in [(i, a) for i, a, _ in instrs],
          'docker: ENTRYPOINT ["apparmor-loader"]')
    ck.ok(("CMD", '["run"]') in [(i, a) for i, a, _ in instrs], 'docker: CMD ["run"]')
    ck.ok(any(i == "RUN" and "cargo auditable build --release --locked" in a for i, a, _ in instrs),
          "docker: the binary is built with cargo auditable build --release --locked")
    agent = re.search(r"^AGENT_FEATURES := (.+)$", open(os.path.join(root, "Makefile")).read(), re.M)
    ck.ok(bool(agent) and any(i == "RUN" and " ".join(agent.group(1).split()) in " ".join(a.split())
                              for i, a, _ in instrs),
          "docker: the binary has the node build's features, as `make musl` (Makefile AGENT_FEATURES)")
    ck.ok(any(i == "RUN" and re.search(r"tools/debfetch\.sh extract \"?rootfs-\$TARGETARCH", a)
              and "tools/image/rootfs.sh" in a for i, a, _ in instrs),
          "docker: the root filesystem is tools/image/rootfs.sh (the step make image runs) fed with the "
          "pinned packages of tools/debian.lock")
    ck.ok(not any(i == "USER" for i, _, _ in instrs),
          "docker: no USER: the agent must be uid 0 (explained in the Dockerfile)")

    if os.geteuid() != 0:
        ck.skip("docker: image root filesystem checks need root (chroot, mknod)")
        return
    agent = agent_binary(root)
    if agent is None:
        ck.skip("docker: image root filesystem checks need a built apparmor-loader "
                "(make musl, cargo build, or APPARMOR_LOADER_BIN)")
        return
    rootfs = os.path.join(tmp, "rootfs")
    debs = os.path.join(tmp, "debs")
    step = (f"{root}/tools/debfetch.sh extract rootfs-amd64 {debs} && "
            f"{root}/tools/image/rootfs.sh amd64 {debs} {rootfs} {agent}")
    r = subprocess.run(["bash", "-o", "pipefail", "-c", step], capture_output=True, text=True, check=False)
    if not ck.ok(r.returncode == 0, "docker: the image's rootfs assembly (tools/image/rootfs.sh) runs with the "
                 "pinned packages" + (f": {r.stderr.strip()}" if r.returncode else "")):
        return
    shells = [p for p in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "bin/busybox", "usr/bin/busybox")
              if os.path.lexists(os.path.join(rootfs, p))]
    ck.ok(not shells, f"docker: the image has no shell ({shells or 'none found'})")
    needed = ["usr/local/bin/apparmor-loader", "usr/sbin/apparmor_parser", "etc/apparmor/parser.conf",
              "usr/share/apparmor-features/features", "etc/apparmor.d/abi/3.0",
              "etc/apparmor.d/tunables/global", "etc/apparmor.d/abstractions/base"]
    absent = [p for p in needed if not os.path.exists(os.path.join(rootfs, p))]
    ck.ok(not absent, "docker: the image holds the agent, the parser, parser.conf, its feature file, abi, "
                      f"tunables and abstractions (missing: {absent or 'none'})")
    # What the container runtime provides and a chroot does not: /dev/null.
    os.makedirs(os.path.join(rootfs, "dev"), exist_ok=True)
    subprocess.run(["mknod", "-m", "666", os.path.join(rootfs, "dev/null"), "c", "1", "3"], check=False)
    pdir = os.path.join(rootfs, "tmp", "profiles")
    os.makedirs(pdir, exist_ok=True)
    for p in profile_files(root):
        shutil.copy(os.path.join(root, "profiles", p), pdir)
    cenv = {"PATH": "/usr/local/bin:/usr/sbin:/usr/bin"}  # the image's ENV PATH
    inside = ["/tmp/profiles/" + p for p in profile_files(root)]
    r = subprocess.run(["chroot", rootfs, "apparmor_parser", "-Q", "-K", "-q"] + inside,
                       env=cenv, capture_output=True, text=True, check=False)
    ck.ok(r.returncode == 0, "docker: inside the image's root filesystem, apparmor_parser compiles every profile "
                             "(libraries, abstractions, tunables, abi all present)"
          + (f": {r.stderr.strip()}" if r.returncode else ""))
    r = subprocess.run(["chroot", rootfs, "apparmor-loader", "check"] + inside,
                       env=cenv, capture_output=True, text=True, check=False)
    ck.ok(r.returncode == 0, "docker: inside the image's root filesystem, `apparmor-loader check` finds the "
                             "parser on PATH and passes every profile"
          + (f": {(r.stdout + r.stderr).strip()}" if r.returncode else ""))
    # Size of everything but the agent (whose size depends on the build profile).
    total = 0
    for dirpath, _, files in os.walk(rootfs):
        for f in files:
            fp = os.path.join(dirpath, f)
            if not os.path.islink(fp) and "/tmp/profiles" not in fp and not fp.endswith("apparmor-loader"):
                total += os.path.getsize(fp)
    print(f"info image root filesystem without the agent binary: {total / 1e6:.1f} MB "
          f"(agent binary used here: {agent}, {os.path.getsize(agent) / 1e6:.1f} MB)")


# --------------------------------------------------------------------------- profiles

PARSER_ERR = re.compile(r"AppArmor parser error for (?P<file>\S+) in profile \S+ at line (?P<line>\d+): (?P<msg>.*)")


def compile_profile(path, features):
    """(ok, 'file:line: message' lines)."""
    r = subprocess.run(["apparmor_parser", "-Q", "-K", "-q", "-M", features, path],
                       capture_output=True, text=True, check=False)
    msgs = []
    for line in r.stderr.splitlines():
        m = PARSER_ERR.search(line)
        msgs.append(f"{m['file']}:{m['line']}: {m['msg']}" if m else f"{path}: {line}")
    return r.returncode == 0, msgs


def check_profiles(root, features, ck):
    files = profile_files(root)
    ck.ok(len(files) >= 3, f"profiles: payment-api and at least two more examples ({files})")
    ck.ok("payment-api" in files, "profiles: payment-api exists")
    for f in files:
        rel = os.path.join("profiles", f)
        ok, msgs = compile_profile(os.path.join(root, rel), features)
        ck.ok(ok, f"profiles: {rel} compiles with apparmor_parser -Q -K (abi 3.0, Debian 12 feature set)"
              + ("" if ok else ": " + " | ".join(msgs)))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for f in files:
            profile_rules.check_profile_file(os.path.join("profiles", f), features,
                                             lambda ok, msg: ck.ok(ok, "profiles: " + msg))
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------------------- properties

def check_loader(rel, docs, root, ck):
    """Properties of the DaemonSet and what it mounts, in one rendered variant."""
    ds = one(docs, "DaemonSet", AGENT)
    if not ck.ok(ds is not None, f"{rel}: renders exactly one DaemonSet {AGENT}"):
        return
    spec = ds["spec"]["template"]["spec"]
    c = container(spec, AGENT)
    if not ck.ok(c is not None, f"{rel}: the DaemonSet has a container {AGENT}"):
        return
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    cms = {d["metadata"]["name"]: d for d in find(docs, "ConfigMap")}

    # --- the profiles volume
    pvols = [n for n, v in vols.items()
             if (v.get("configMap") or {}).get("name", "").startswith(PROFILES_CM)]
    if ck.ok(len(pvols) == 1 and pvols[0] in mounts,
             f"{rel}: one configMap volume from {PROFILES_CM}* is mounted in the loader"):
        pm = mounts[pvols[0]]
        cm_name = vols[pvols[0]]["configMap"]["name"]
        ck.ok("subPath" not in pm and "subPathExpr" not in pm,
              f"{rel}: the profiles volume is mounted without subPath (subPath mounts never update)")
        ck.ok(not vols[pvols[0]]["configMap"].get("items"),
              f"{rel}: the profiles volume projects every key (no items: list to forget a profile in)")
        profiles_dir = env_value(c, "APPARMOR_LOADER_PROFILES")
        for a in c.get("args") or []:
            if a.startswith("--profiles="):
                profiles_dir = a.split("=", 1)[1]
        ck.ok(profiles_dir == pm["mountPath"],
              f"{rel}: --profiles/APPARMOR_LOADER_PROFILES ({profiles_dir}) is the profiles mount path "
              f"({pm['mountPath']})")
        cm = cms.get(cm_name)
        if ck.ok(cm is not None, f"{rel}: the profiles ConfigMap {cm_name} is rendered with the DaemonSet"):
            files = profile_files(root)
            keys = sorted((cm.get("data") or {}).keys())
            ck.ok(keys == files, f"{rel}: the profiles ConfigMap's keys are exactly the files in profiles/ "
                                 f"(keys {keys}, files {files})")
            same = all(
                open(os.path.join(root, "profiles", k), encoding="utf-8").read() == cm["data"][k]
                for k in keys if k in files
            )
            ck.ok(same, f"{rel}: every profile in the ConfigMap is byte-identical to its file")

    # --- the config file
    config = None
    cvols = [n for n, v in vols.items() if (v.get("configMap") or {}).get("name", "").startswith(CONFIG_CM)]
    cfg_path = env_value(c, "APPARMOR_LOADER_CONFIG")
    if ck.ok(len(cvols) == 1 and cvols[0] in mounts and cfg_path,
             f"{rel}: the config ConfigMap is mounted and passed with APPARMOR_LOADER_CONFIG"):
        cm = cms.get(vols[cvols[0]]["configMap"]["name"]) or {}
        mount = mounts[cvols[0]]
        key = os.path.relpath(cfg_path, mount["mountPath"])
        ck.ok("subPath" not in mount, f"{rel}: the config volume is mounted without subPath")
        if ck.ok(key in (cm.get("data") or {}),
                 f"{rel}: {cfg_path} is a key ({key}) of the mounted config ConfigMap"):
            # Its keys are checked by the agent itself (check_config_with_agent): the flags are the only list of them.
            config = yaml.safe_load(cm["data"][key]) or {}
            modes = config.get("modes") or {}
            names = profile_files(root)
            ck.ok(all(m in names for m in modes) and all(v in ("enforce", "complain") for v in modes.values()),
                  f"{rel}: modes: names profiles that exist, with enforce|complain ({modes})")

    # --- endpoints and probes
    port = listen_port(c, config)
    ports = [p.get("containerPort") for p in c.get("ports") or []]
    ck.ok(port in ports, f"{rel}: the agent's listen port {port} is a declared containerPort ({ports})")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
        ck.ok(got == path and probe_port(c, probe) == port,
              f"{rel}: {probe} is GET {path} on the agent's port {port} (got {got} on {probe_port(c, probe)})")
    ann = ds["spec"]["template"]["metadata"].get("annotations") or {}
    ck.ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
          and ann.get("prometheus.io/path") == "/metrics",
          f"{rel}: Prometheus scrape annotations point at :{port}/metrics")

    # --- privileges
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    audit_source = env_value(c, "APPARMOR_LOADER_AUDIT_SOURCE") or (config or {}).get("audit_source") or "auto"
    netlink = audit_source == "netlink"
    auditlog = audit_source.startswith("/")
    want_caps = ["MAC_ADMIN", "AUDIT_READ"] if netlink else ["MAC_ADMIN"]
    ck.ok(caps.get("drop") == ["ALL"] and caps.get("add") == want_caps,
          f"{rel}: capabilities drop ALL, add only {want_caps} (audit source {audit_source}; got {caps})")
    ck.ok(audit_source in ("off", "netlink") or auditlog,
          f"{rel}: the denial monitor's source is explicit: off, netlink or an audit log ({audit_source}); "
          "auto would only find sources this pod cannot read")
    ck.ok(effective(spec, c, "privileged") is not True, f"{rel}: the loader is not privileged")
    ck.ok(sc.get("allowPrivilegeEscalation") is False, f"{rel}: the loader has allowPrivilegeEscalation: false")
    ck.ok(sc.get("readOnlyRootFilesystem") is True, f"{rel}: the loader has a read-only root filesystem")
    tmp_mount = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/tmp"]
    ck.ok(len(tmp_mount) == 1 and "emptyDir" in vols.get(tmp_mount[0]["name"], {}),
          f"{rel}: /tmp is a writable emptyDir (the parser's scratch files; the root filesystem is read-only)")
    aa = effective(spec, c, "appArmorProfile") or {}
    ck.ok(aa == {"type": "Unconfined"}, f"{rel}: the loader runs with appArmorProfile Unconfined (got {aa})")
    ck.ok(effective(spec, c, "runAsUser") == 0, f"{rel}: the loader runs as uid 0, stated explicitly")
    ck.ok((effective(spec, c, "seccompProfile") or {}).get("type") == "RuntimeDefault",
          f"{rel}: the loader keeps the RuntimeDefault seccomp profile")
    hostpaths = sorted((v["hostPath"]["path"], v["hostPath"].get("type")) for v in vols.values() if "hostPath" in v)
    want_paths = [("/sys/kernel/security", "Directory"), ("/var/lib/apparmor-loader", "DirectoryOrCreate")]
    if auditlog:
        want_paths = sorted(want_paths + [("/var/log/audit", "Directory")])
    features_file = env_value(c, "APPARMOR_LOADER_NODE_FEATURES_FILE")
    if features_file:
        # components/nfd-labels: Node Feature Discovery's features.d, where the agent writes one file.
        want_paths = sorted(want_paths + [(os.path.dirname(features_file), "DirectoryOrCreate")])
    ck.ok(hostpaths == want_paths, f"{rel}: host paths are exactly securityfs (Directory), the state dir "
                                   f"(DirectoryOrCreate){' and /var/log/audit' if auditlog else ''} ({hostpaths})")
    if auditlog:
        names = [n for n, v in vols.items() if (v.get("hostPath") or {}).get("path") == "/var/log/audit"]
        m = mounts.get(names[0]) if names else None
        ck.ok(m is not None and m.get("readOnly") is True and audit_source.startswith(m["mountPath"] + "/"),
              f"{rel}: the audit log directory is mounted read-only where the audit source points")
    for hp, mp in (("/sys/kernel/security", "/sys/kernel/security"),
                   ("/var/lib/apparmor-loader", "/var/lib/apparmor-loader")):
        names = [n for n, v in vols.items() if (v.get("hostPath") or {}).get("path") == hp]
        ck.ok(bool(names) and names[0] in mounts and mounts[names[0]]["mountPath"] == mp
              and not mounts[names[0]].get("readOnly"),
              f"{rel}: host {hp} is mounted read-write at {mp}, where the agent looks by default")
    ck.ok(spec.get("hostPID") is True, f"{rel}: hostPID (the in-use scan must see every process on the node)")
    ck.ok(not spec.get("hostIPC"), f"{rel}: no hostIPC")
    check_listen(rel, c, config, ck)
    if netlink:
        ck.ok(spec.get("hostNetwork") is True,
              f"{rel}: hostNetwork, because audit multicast reaches only the initial network namespace")
    else:
        ck.ok(not spec.get("hostNetwork"), f"{rel}: no hostNetwork (the denial monitor does not use netlink)")
    # Only the node-taint mode talks to the API server; every other variant mounts no token.
    wants_token = env_value(c, "APPARMOR_LOADER_NODE_TAINT") == "true"
    ck.ok(spec.get("automountServiceAccountToken") is wants_token,
          f"{rel}: " + ("the node-taint mode mounts the token" if wants_token else "no service account token in the pod"))
    sa = one(docs, "ServiceAccount", spec.get("serviceAccountName"))
    ck.ok(sa is not None and sa.get("automountServiceAccountToken") is False,
          f"{rel}: the ServiceAccount exists and has automountServiceAccountToken: false")

    # --- scheduling and rollout
    ck.ok(spec.get("priorityClassName") == "system-node-critical", f"{rel}: priorityClassName system-node-critical")
    ck.ok({"operator": "Exists"} in (spec.get("tolerations") or []),
          f"{rel}: tolerates every taint (operator: Exists, no key, no effect)")
    ck.ok((spec.get("nodeSelector") or {}).get("kubernetes.io/os") == "linux",
          f"{rel}: nodeSelector kubernetes.io/os: linux")
    us = ds["spec"].get("updateStrategy") or {}
    ru = us.get("rollingUpdate") or {}
    ck.ok(us.get("type") == "RollingUpdate" and ru.get("maxUnavailable") not in (None, 0, "0%")
          and ru.get("maxSurge") in (0, "0%"),
          f"{rel}: RollingUpdate with a maxUnavailable budget and maxSurge 0 ({us})")
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    ck.ok(all(k in req and k in lim for k in ("cpu", "memory")),
          f"{rel}: CPU and memory requests and limits are set ({res})")

    # --- namespaces
    nss = {d["metadata"].get("namespace") for d in docs if d["kind"] not in CLUSTER_SCOPED}
    ns = one(docs, "Namespace")
    ck.ok(ns is not None and nss == {ns["metadata"]["name"]},
          f"{rel}: every namespaced object is in the rendered Namespace ({sorted(map(str, nss))})")
    ck.ok(ns is not None and ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
          == "privileged", f"{rel}: the Namespace admits the loader (pod-security enforce: privileged)")


def check_listen(rel, c, config, ck):
    """Where the endpoints listen: the pod's IP and loopback, never a wildcard address."""
    addrs = listen_addresses(c, config)
    hosts = [split_host_port(a)[0] for a in addrs]
    wildcard = [a for a, h in zip(addrs, hosts) if h in ("0.0.0.0", "::", "")]
    ck.ok(not wildcard, f"{rel}: the agent listens on no wildcard address (every interface of the pod, or of the "
                        f"node on the host network): {wildcard or addrs}")
    ck.ok(POD_IP_HOST in hosts and all(h == POD_IP_HOST or h in LOOPBACK_HOSTS for h in hosts),
          f"{rel}: the agent listens on the pod's IP (what probes and scrapers reach) and loopback only ({addrs})")
    env = c.get("env") or []
    names = [e.get("name") for e in env]
    pod_ip = next((e for e in env if e.get("name") == "POD_IP"), {})
    field = ((pod_ip.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    ck.ok(field == "status.podIP" and "APPARMOR_LOADER_LISTEN" in names
          and names.index("POD_IP") < names.index("APPARMOR_LOADER_LISTEN"),
          f"{rel}: POD_IP comes from status.podIP and is defined before APPARMOR_LOADER_LISTEN expands it ({names})")


def check_network_policy(rel, docs, ck):
    """A NetworkPolicy that lets only a monitoring namespace reach the agent's port and no egress out."""
    ds = one(docs, "DaemonSet", AGENT)
    pols = find(docs, "NetworkPolicy")
    if not ds or not ck.ok(len(pols) == 1, f"{rel}: one NetworkPolicy for the agent"):
        return
    pol, spec = pols[0], pols[0].get("spec") or {}
    pod = ds["spec"]["template"]
    labels = pod["metadata"].get("labels") or {}
    sel = (spec.get("podSelector") or {}).get("matchLabels") or {}
    ck.ok(bool(sel) and all(labels.get(k) == v for k, v in sel.items())
          and pol["metadata"].get("namespace") == ds["metadata"].get("namespace"),
          f"{rel}: the NetworkPolicy selects the agent's pods in its namespace ({sel})")
    ck.ok(not pod["spec"].get("hostNetwork"),
          f"{rel}: the NetworkPolicy is not combined with hostNetwork (where it would protect nothing)")
    types = spec.get("policyTypes") or []
    ck.ok("Ingress" in types and "Egress" in types and not spec.get("egress"),
          f"{rel}: the NetworkPolicy governs ingress and denies all egress (policyTypes {types})")
    c = container(pod["spec"], AGENT)
    port = listen_port(c, None)
    named = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    rules = spec.get("ingress") or []
    ports_ok = all(r.get("ports") and all((named.get(p.get("port"), p.get("port")) == port)
                                          and p.get("protocol", "TCP") == "TCP" for p in r["ports"]) for r in rules)
    ck.ok(bool(rules) and ports_ok, f"{rel}: every ingress rule admits only TCP to the agent's port {port}")
    peers = [p for r in rules for p in r.get("from") or [None]]
    only_ns = all(p is not None and set(p) == {"namespaceSelector"}
                  and ((p["namespaceSelector"] or {}).get("matchLabels") or {}).get("kubernetes.io/metadata.name")
                  for p in peers)
    ck.ok(bool(peers) and only_ns,
          f"{rel}: ingress comes only from namespaces named by kubernetes.io/metadata.name (no empty selector, "
          f"no ipBlock, no rule without from: {peers})")


def check_payment_api(rel, docs, root, ck):
    dep = one(docs, "Deployment", "payment-api")
    if not ck.ok(dep is not None, f"{rel}: renders the payment-api Deployment"):
        return
    tmpl = dep["spec"]["template"]
    spec = tmpl["spec"]
    c = container(spec, "payment-api")
    if not ck.ok(c is not None, f"{rel}: the Deployment has a container payment-api"):
        return
    aa = effective(spec, c, "appArmorProfile") or {}
    ck.ok(aa == {"type": "Localhost", "localhostProfile": "payment-api"},
          f"{rel}: securityContext.appArmorProfile is Localhost payment-api (got {aa})")
    ck.ok("payment-api" in profile_files(root),
          f"{rel}: the localhostProfile payment-api is a file in profiles/")
    old = [k for m in (dep["metadata"], tmpl["metadata"]) for k in (m.get("annotations") or {})
           if k.startswith("container.apparmor.security.beta.kubernetes.io/")]
    ck.ok(not old, f"{rel}: no deprecated AppArmor annotation ({old or 'none'})")
    ck.ok(effective(spec, c, "runAsUser") == 1001, f"{rel}: payment-api runs as uid 1001")
    ck.ok(effective(spec, c, "runAsNonRoot") is True, f"{rel}: payment-api has runAsNonRoot: true")
    sc = c.get("securityContext") or {}
    ck.ok(sc.get("readOnlyRootFilesystem") is True, f"{rel}: payment-api has a read-only root filesystem")
    ck.ok(sc.get("allowPrivilegeEscalation") is False, f"{rel}: payment-api has allowPrivilegeEscalation: false")
    caps = sc.get("capabilities") or {}
    ck.ok(caps.get("drop") == ["ALL"] and not caps.get("add"), f"{rel}: payment-api drops every capability")
    ck.ok((effective(spec, c, "seccompProfile") or {}).get("type") == "RuntimeDefault",
          f"{rel}: payment-api has the RuntimeDefault seccomp profile")
    ck.ok((c.get("command") or [None])[0] == "/usr/local/bin/node",
          f"{rel}: payment-api starts /usr/local/bin/node directly (the only program its profile may execute)")
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    writable = sorted(m["mountPath"] for m in c.get("volumeMounts") or [] if not m.get("readOnly"))
    ck.ok(writable == ["/app/logs"], f"{rel}: the only writable mount is /app/logs, as in the profile ({writable})")
    cfg = [m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/etc/payment-api"]
    ok = len(cfg) == 1 and "subPath" not in cfg[0] and "configMap" in vols.get(cfg[0]["name"], {})
    if ck.ok(ok, f"{rel}: config.json comes from a ConfigMap volume at /etc/payment-api, without subPath"):
        cm = one(docs, "ConfigMap", vols[cfg[0]["name"]]["configMap"]["name"])
        ck.ok(cm is not None and "config.json" in (cm.get("data") or {}),
              f"{rel}: the payment-api ConfigMap has the key config.json")
    ns = one(docs, "Namespace")
    ck.ok(ns is not None and dep["metadata"].get("namespace") == ns["metadata"]["name"]
          and ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
          f"{rel}: payment-api's namespace enforces the restricted Pod Security level")


def check_variants(rendered, root, ck):
    base = rendered.get("manifests/base") or []
    base_cfg = None
    cm = [d for d in base if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(CONFIG_CM)]
    if ck.ok(len(cm) == 1, "base: renders one agent config ConfigMap"):
        base_cfg = yaml.safe_load(cm[0]["data"]["config.yaml"])
    names = {d["metadata"]["name"] for d in base if d["kind"] == "ConfigMap"}
    ck.ok(any(re.fullmatch(PROFILES_CM + r"-[a-z0-9]{10}", n) for n in names),
          f"base: the profiles ConfigMap has a content-hash suffix, so a change rolls the DaemonSet ({sorted(names)})")
    ck.ok(any(re.fullmatch(CONFIG_CM + r"-[a-z0-9]{10}", n) for n in names),
          "base: the config ConfigMap has a content-hash suffix (read at start: a change must roll)")

    hot = rendered.get("manifests/examples/overlays/hot-reload")
    if ck.ok(hot is not None, "hot-reload: the example overlay renders"):
        hn = {d["metadata"]["name"] for d in hot if d["kind"] == "ConfigMap"}
        ck.ok(PROFILES_CM in hn and any(re.fullmatch(CONFIG_CM + r"-[a-z0-9]{10}", n) for n in hn),
              f"hot-reload: profiles ConfigMap without hash suffix, config ConfigMap still hashed ({sorted(hn)})")

    comp = rendered.get("manifests/examples/overlays/complain-payment-api")
    if ck.ok(comp is not None, "complain: the example overlay renders"):
        cm = [d for d in comp if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(CONFIG_CM)]
        if ck.ok(len(cm) == 1, "complain: one agent config ConfigMap (the overlay replaced the base's)"):
            cfg = yaml.safe_load(cm[0]["data"]["config.yaml"]) or {}
            ck.ok(cfg.get("modes") == {"payment-api": "complain"},
                  f"complain: modes puts payment-api in complain mode ({cfg.get('modes')})")
            rest = {k: v for k, v in cfg.items() if k != "modes"}
            base_rest = {k: v for k, v in (base_cfg or {}).items() if k != "modes"}
            ck.ok(rest == base_rest, "complain: apart from modes, the overlay's config equals the base's "
                                     "(no drift between the two copies)")

    mon = rendered.get("manifests/examples/overlays/monitoring")
    if ck.ok(mon is not None, "monitoring: the example overlay renders"):
        sm = one(mon, "ServiceMonitor")
        svc = one(mon, "Service")
        ds = one(mon, "DaemonSet", AGENT)
        if ck.ok(sm and svc and ds, "monitoring: ServiceMonitor, Service and DaemonSet are rendered"):
            pod_labels = ds["spec"]["template"]["metadata"]["labels"]
            sel = svc["spec"].get("selector") or {}
            ck.ok(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
                  "monitoring: the Service selects the agent pods")
            sm_sel = (sm["spec"].get("selector") or {}).get("matchLabels") or {}
            ck.ok(sm_sel and all(svc["metadata"].get("labels", {}).get(k) == v for k, v in sm_sel.items()),
                  "monitoring: the ServiceMonitor selects the Service")
            port_names = [p.get("name") for p in svc["spec"]["ports"]]
            ck.ok(all(e.get("port") in port_names and e.get("path", "/metrics") == "/metrics"
                      for e in sm["spec"].get("endpoints") or [{}]),
                  "monitoring: the ServiceMonitor scrapes /metrics on a named Service port")
            c = container(ds["spec"]["template"]["spec"], AGENT)
            cports = {p.get("name") for p in c.get("ports") or []}
            ck.ok(all(p.get("targetPort") in cports for p in svc["spec"]["ports"]),
                  "monitoring: the Service's targetPort is the agent's named container port")
            ck.ok(sm["metadata"].get("namespace") == ds["metadata"].get("namespace")
                  == svc["metadata"].get("namespace"), "monitoring: ServiceMonitor and Service are in the "
                                                       "agent's namespace")

    argo = rendered.get("manifests/examples/argocd")
    if ck.ok(argo is not None, "argocd: the Application renders"):
        app = one(argo, "Application")
        if ck.ok(app is not None, "argocd: one Argo CD Application"):
            src = app["spec"].get("source") or {}
            path = src.get("path", "")
            ck.ok(path in rendered, f"argocd: source.path {path} is a kustomization this suite rendered")
            base_ns = (one(base, "Namespace") or {}).get("metadata", {}).get("name")
            ck.ok(app["spec"].get("destination", {}).get("namespace") == base_ns,
                  "argocd: destination namespace is the base's namespace")
            auto = (app["spec"].get("syncPolicy") or {}).get("automated") or {}
            ck.ok(auto.get("prune") is True and auto.get("selfHeal") is True,
                  "argocd: automated sync with prune and selfHeal")


def check_config_with_agent(rendered, root, ck, tmp):
    """The agent itself parses every rendered config file: unknown keys and ill-typed values are errors."""
    agent = agent_binary(root)
    if agent is None:
        ck.skip("config: no built apparmor-loader to parse the rendered config files with")
        return
    sample = os.path.join(root, "profiles", "payment-api")
    for rel, docs in sorted(rendered.items()):
        for cm in docs:
            if cm["kind"] == "ConfigMap" and cm["metadata"]["name"].startswith(CONFIG_CM):
                path = os.path.join(tempfile.mkdtemp(dir=tmp), "config.yaml")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(cm["data"]["config.yaml"])
                r = subprocess.run([agent, "--config", path, "check", sample], capture_output=True, text=True,
                                   check=False)
                ck.ok(r.returncode == 0, f"config: {rel}: apparmor-loader accepts the rendered config.yaml"
                      + (f": {r.stderr.strip()}" if r.returncode else ""))


def properties(rendered, root, ck):
    for rel, docs in sorted(rendered.items()):
        if one(docs, "DaemonSet", AGENT) is not None:
            check_loader(rel, docs, root, ck)
        if find(docs, "NetworkPolicy"):
            check_network_policy(rel, docs, ck)
        if one(docs, "Deployment", "payment-api") is not None:
            check_payment_api(rel, docs, root, ck)
    ck.ok("manifests/examples/payment-api" in rendered, "payment-api: the example renders")
    ck.ok(any(find(d, "NetworkPolicy") for r, d in rendered.items() if r.startswith("manifests/examples/")),
          "network-policy: an example overlay uses the NetworkPolicy component")
    check_variants(rendered, root, ck)


# --------------------------------------------------------------------------- mutations

def _ds(docs):
    return one(docs, "DaemonSet", AGENT)


def _loader(docs):
    return container(_ds(docs)["spec"]["template"]["spec"], AGENT)


def _pay(docs):
    return container(one(docs, "Deployment", "payment-api")["spec"]["template"]["spec"], "payment-api")


def _profiles_mount(docs):
    c = _loader(docs)
    return next(m for m in c["volumeMounts"] if m["mountPath"] == env_value(c, "APPARMOR_LOADER_PROFILES"))


def _env(docs, name):
    return next(e for e in _loader(docs)["env"] if e["name"] == name)


def _set_listen(docs, value):
    _env(docs, "APPARMOR_LOADER_LISTEN")["value"] = value


def _policy(docs):
    return one(docs, "NetworkPolicy")["spec"]


def _set_probe(docs, probe, path):
    _loader(docs)[probe]["httpGet"]["path"] = path


def _drop_cm_key(docs):
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(PROFILES_CM))
    cm["data"].pop(sorted(cm["data"])[0])


def _annotate(docs):
    t = one(docs, "Deployment", "payment-api")["spec"]["template"]["metadata"]
    t.setdefault("annotations", {})["container.apparmor.security.beta.kubernetes.io/payment-api"] = \
        "localhost/payment-api"


MUTATIONS = [
    ("manifests/base", "profiles mount gets a subPath",
     lambda d: _profiles_mount(d).update(subPath="payment-api")),
    ("manifests/base", "liveness probe points at /health", lambda d: _set_probe(d, "livenessProbe", "/health")),
    ("manifests/base", "readiness probe points at /healthz", lambda d: _set_probe(d, "readinessProbe", "/healthz")),
    ("manifests/base", "readiness probe on another port",
     lambda d: _loader(d)["readinessProbe"]["httpGet"].update(port=8080)),
    ("manifests/base", "a profile is missing from the ConfigMap", _drop_cm_key),
    ("manifests/base", "the loader becomes privileged",
     lambda d: _loader(d)["securityContext"].update(privileged=True)),
    ("manifests/base", "SYS_ADMIN is added",
     lambda d: _loader(d)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")),
    ("manifests/base", "the loader gets RuntimeDefault AppArmor",
     lambda d: _loader(d)["securityContext"].update(appArmorProfile={"type": "RuntimeDefault"})),
    ("manifests/base", "priority class removed",
     lambda d: _ds(d)["spec"]["template"]["spec"].pop("priorityClassName")),
    ("manifests/base", "tolerations narrowed",
     lambda d: _ds(d)["spec"]["template"]["spec"].update(tolerations=[{"key": "a", "operator": "Exists"}])),
    ("manifests/base", "root filesystem writable",
     lambda d: _loader(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    ("manifests/base", "hostPID removed", lambda d: _ds(d)["spec"]["template"]["spec"].pop("hostPID")),
    ("manifests/base", "an extra hostPath (/) appears",
     lambda d: _ds(d)["spec"]["template"]["spec"]["volumes"].append({"name": "x", "hostPath": {"path": "/"}})),
    ("manifests/base", "memory limit removed", lambda d: _loader(d)["resources"]["limits"].pop("memory")),
    ("manifests/base", "hostNetwork without the netlink audit source",
     lambda d: _ds(d)["spec"]["template"]["spec"].update(hostNetwork=True)),
    ("manifests/components/denials-netlink", "netlink source without AUDIT_READ",
     lambda d: _loader(d)["securityContext"]["capabilities"].update(add=["MAC_ADMIN"])),
    ("manifests/base", "the agent listens on every interface", lambda d: _set_listen(d, "0.0.0.0:9741")),
    ("manifests/base", "the agent listens on a node address instead of its pod's",
     lambda d: _set_listen(d, "$(POD_IP):9741,10.0.0.1:9741")),
    ("manifests/base", "POD_IP defined after the listen address uses it",
     lambda d: _loader(d).update(env=sorted(_loader(d)["env"], key=lambda e: e["name"] == "POD_IP"))),
    ("manifests/base", "POD_IP taken from the host's IP",
     lambda d: _env(d, "POD_IP")["valueFrom"]["fieldRef"].update(fieldPath="status.hostIP")),
    ("manifests/components/denials-netlink", "the agent listens on every interface of the node",
     lambda d: _set_listen(d, "[::]:9741")),
    ("manifests/components/network-policy", "the policy admits every namespace",
     lambda d: _policy(d)["ingress"][0]["from"][0].update(namespaceSelector={})),
    ("manifests/components/network-policy", "an ingress rule without from (everyone)",
     lambda d: _policy(d)["ingress"][0].pop("from")),
    ("manifests/components/network-policy", "the policy opens another port",
     lambda d: _policy(d)["ingress"][0]["ports"].append({"protocol": "TCP", "port": 22})),
    ("manifests/components/network-policy", "the policy admits an ipBlock",
     lambda d: _policy(d)["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})),
    ("manifests/components/network-policy", "the policy selects other pods",
     lambda d: _policy(d)["podSelector"].update(matchLabels={"app": "other"})),
    ("manifests/components/network-policy", "the policy allows egress",
     lambda d: _policy(d).update(egress=[{}])),
    ("manifests/components/network-policy", "the policy on a host-network agent",
     lambda d: _ds(d)["spec"]["template"]["spec"].update(hostNetwork=True)),
    ("manifests/examples/payment-api", "deprecated AppArmor annotation added", _annotate),
    ("manifests/examples/payment-api", "appArmorProfile becomes RuntimeDefault",
     lambda d: _pay(d)["securityContext"].update(appArmorProfile={"type": "RuntimeDefault"})),
    ("manifests/examples/payment-api", "runAsUser 0 at container level",
     lambda d: _pay(d)["securityContext"].update(runAsUser=0)),
    ("manifests/examples/payment-api", "allowPrivilegeEscalation true",
     lambda d: _pay(d)["securityContext"].update(allowPrivilegeEscalation=True)),
    ("manifests/examples/payment-api", "root filesystem writable",
     lambda d: _pay(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    ("manifests/examples/payment-api", "started through a shell",
     lambda d: _pay(d).update(command=["/bin/sh", "-c", "node /app/server.js"])),
]

BROKEN_PROFILES = [
    ("a redundant rule", "  /app/** r,\n", "  /app/** r,\n  /app/server.js r,\n"),
    ("a plain deny", "  audit deny network packet,\n", "  deny network packet,\n"),
    ("a deny that guards nothing (duplicate)", "  audit deny network packet,\n",
     "  audit deny network packet,\n  audit deny network packet,\n"),
    ("a dbus rule (not enforced by Debian 12's kernel)", "  /app/** r,\n", "  /app/** r,\n  dbus send,\n"),
    ("a rule with a syntax error", "  /app/** r,\n", "  /app/** r\n"),
]


def check_mutations(rendered, root, features, ck, tmp):
    for rel, what, mutate in MUTATIONS:
        docs = copy.deepcopy(rendered.get(rel) or [])
        try:
            mutate(docs)
        except (KeyError, StopIteration, TypeError, AttributeError, IndexError) as e:
            ck.ok(False, f"mutation: {rel}: could not apply '{what}': {e!r}")
            continue
        probe = Checker(quiet=True)
        if one(docs, "DaemonSet", AGENT) is not None:
            check_loader(rel, docs, root, probe)
        if find(docs, "NetworkPolicy"):
            check_network_policy(rel, docs, probe)
        if one(docs, "Deployment", "payment-api") is not None:
            check_payment_api(rel, docs, root, probe)
        ck.ok(probe.failed > 0, f"mutation: {rel}: '{what}' is caught"
              + (f" ({probe.failures[0]})" if probe.failures else ""))

    with open(os.path.join(root, "profiles", "payment-api"), encoding="utf-8") as f:
        original = f.read()
    for what, old, new in BROKEN_PROFILES:
        if not ck.ok(old in original, f"mutation: profiles/payment-api still has the line the '{what}' test edits"):
            continue
        d = tempfile.mkdtemp(dir=tmp)
        path = os.path.join(d, "payment-api")
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(old, new, 1))
        probe = Checker(quiet=True)
        ok, msgs = compile_profile(path, features)
        probe.ok(ok, "compiles")
        if ok:
            profile_rules.check_profile_file(path, features, probe.ok)
        detail = probe.failures[0] if probe.failures else ""
        if not ok:
            line = original.replace(old, new, 1).split("\n").index(new.split("\n")[0]) + 1
            ck.ok(any(m.startswith(f"{path}:") for m in msgs),
                  f"mutation: a syntax error is reported as file:line ({'; '.join(msgs)}; edited line {line})")
        ck.ok(probe.failed > 0, f"mutation: payment-api with {what} is caught ({detail})")


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--features", required=True)
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    ck = Checker()
    with tempfile.TemporaryDirectory(prefix="manifests-check-") as tmp:
        print("== render")
        rendered = check_render(root, ck, tmp)
        print("== schema")
        check_schema(rendered, ck)
        print("== docker")
        check_docker(root, ck, tmp)
        print("== profiles")
        check_profiles(root, args.features, ck)
        print("== properties")
        properties(rendered, root, ck)
        check_config_with_agent(rendered, root, ck, tmp)
        print("== gating (node labels, node taint, admission policies; CEL with cel-python)")
        gating_props.check(rendered, root, ck)
        cel_policies.check(rendered, root, agent_binary(root), sorted(profile_files(root)), ck, tmp)
        cel_policies.check_mutations(rendered, ck)
        print("== monitoring (alert rules with promtool, the Grafana dashboard)")
        monitoring.check_monitoring(rendered, root, ck, tmp)
        print("== mutations (each check can fail)")
        check_mutations(rendered, root, args.features, ck, tmp)
    if ck.failed:
        print("\nFailed:")
        for f in ck.failures:
            print(f"  {f}")
    if ck.skipped:
        print(f"{ck.skipped} skipped (see SKIP lines)")
    print(f"{ck.passed} passed, {ck.failed} failed")
    sys.exit(1 if ck.failed else 0)


if __name__ == "__main__":
    main()
