"""Properties of the gating components (manifests/components/nfd-labels, node-taint, admission-guard)
and of the payment-api example's node affinity, on the rendered YAML."""

import os

AGENT = "apparmor-loader"
FEATURES_FILE = "/etc/kubernetes/node-feature-discovery/features.d/apparmor-loader"
PROFILE_LABEL_PREFIX = "profile.apparmor.feature.node.kubernetes.io/"
TAINT_KEY = "apparmor-loader.io/not-ready"


def _one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def _agent(docs):
    ds = _one(docs, "DaemonSet", AGENT)
    if ds is None:
        return None, None, None
    spec = ds["spec"]["template"]["spec"]
    c = next((c for c in spec["containers"] if c["name"] == AGENT), None)
    return ds, spec, c


def _env(c, name):
    return next((e for e in c.get("env") or [] if e["name"] == name), None)


def check_nfd(docs, ck):
    rel = "nfd-labels"
    ds, spec, c = _agent(docs)
    if not ck.ok(c is not None, f"{rel}: renders the agent"):
        return
    path = (_env(c, "APPARMOR_LOADER_NODE_FEATURES_FILE") or {}).get("value")
    ck.ok(path == FEATURES_FILE, f"{rel}: the agent writes {FEATURES_FILE} (got {path})")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    m = mounts.get(os.path.dirname(path or ""))
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    host = (vols.get(m["name"]) if m else None) or {}
    ck.ok(m is not None and not m.get("readOnly") and (host.get("hostPath") or {}).get("path") == m["mountPath"],
          f"{rel}: NFD's features.d host directory is mounted writable at the same path")
    ck.ok(spec.get("automountServiceAccountToken") is False, f"{rel}: node labels need no service account token")


def check_taint(docs, ck):
    rel = "node-taint"
    ds, spec, c = _agent(docs)
    if not ck.ok(c is not None, f"{rel}: renders the agent"):
        return
    ck.ok((_env(c, "APPARMOR_LOADER_NODE_TAINT") or {}).get("value") == "true", f"{rel}: turns --node-taint on")
    name = ((_env(c, "APPARMOR_LOADER_NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {})
    ck.ok(name.get("fieldPath") == "spec.nodeName", f"{rel}: the node name comes from the downward API ({name})")
    ck.ok(spec.get("automountServiceAccountToken") is True, f"{rel}: the pod mounts its token")
    ns = ds["metadata"].get("namespace")
    sa = spec.get("serviceAccountName")
    role = _one(docs, "ClusterRole")
    ck.ok(role is not None and role.get("rules") == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}],
          f"{rel}: the ClusterRole grants get and patch on nodes and nothing else")
    crb = _one(docs, "ClusterRoleBinding")
    ck.ok(crb is not None and role is not None and crb["roleRef"]["name"] == role["metadata"]["name"]
          and crb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
          f"{rel}: the ClusterRoleBinding binds it to the agent's ServiceAccount {ns}/{sa} only")
    ck.ok(not [d for d in docs if d["kind"] in ("Role", "RoleBinding")], f"{rel}: no other RBAC")
    vap = _one(docs, "ValidatingAdmissionPolicy")
    conds = [m["expression"] for m in (vap or {}).get("spec", {}).get("matchConditions") or []]
    ck.ok(conds == [f"request.userInfo.username == 'system:serviceaccount:{ns}:{sa}'"],
          f"{rel}: the node policy applies to the agent's ServiceAccount ({conds})")
    ck.ok(vap is not None and "'" + TAINT_KEY + "'" in str(vap["spec"]["variables"][0]["expression"]),
          f"{rel}: the node policy is about the taint {TAINT_KEY}")
    binding = _one(docs, "ValidatingAdmissionPolicyBinding")
    ck.ok(binding is not None and vap is not None and binding["spec"]["policyName"] == vap["metadata"]["name"]
          and binding["spec"]["validationActions"] == ["Deny"], f"{rel}: the node policy is bound with Deny")


def check_payment_affinity(docs, ck):
    rel = "payment-api"
    dep = _one(docs, "Deployment", "payment-api")
    if not ck.ok(dep is not None, f"{rel}: renders the Deployment"):
        return
    spec = dep["spec"]["template"]["spec"]
    profiles = {c["securityContext"]["appArmorProfile"]["localhostProfile"] for c in spec["containers"]
                if "appArmorProfile" in (c.get("securityContext") or {})}
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    needed = {PROFILE_LABEL_PREFIX + p for p in profiles}
    ok = bool(terms) and all(
        needed <= {e["key"] for e in t.get("matchExpressions") or [] if e["operator"] == "Exists"} for t in terms)
    ck.ok(ok, f"{rel}: every node selector term requires the label of each profile the pods use ({sorted(needed)})")


def check(rendered, root, ck):
    for rel, fn in (("manifests/components/nfd-labels", check_nfd), ("manifests/components/node-taint", check_taint),
                    ("manifests/examples/payment-api", check_payment_affinity)):
        docs = rendered.get(rel)
        if ck.ok(docs is not None, f"gating: {rel} renders"):
            fn(docs, ck)
    base = rendered.get("manifests/base") or []
    ck.ok(not [d for d in base if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")],
          "gating: the base binds no RBAC at all (API access is the node-taint component's alone)")
