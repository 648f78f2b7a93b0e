"""The CEL of every ValidatingAdmissionPolicy this repository ships, evaluated with cel-python on
Pods, workloads and node updates that must be admitted or rejected (no API server can run here).

The evaluator follows the API server's order: the resource rules and matchConditions decide whether
the policy applies; variables are evaluated in order (an error in one makes every validation fail,
which is stricter than the API server's lazy variables, so an "admitted" here is admitted there);
a validation that is false or fails to evaluate denies (failurePolicy: Fail), with its
messageExpression (or message).
"""

import copy
import os
import subprocess
import tempfile

import celpy

ENV = celpy.Environment()
NODE_SA = "system:serviceaccount:apparmor-loader:apparmor-loader"
NODE_NAME_CLAIM = "authentication.kubernetes.io/node-name"
TAINT = {"key": "apparmor-loader.io/not-ready", "effect": "NoSchedule"}

_compiled = {}


def _eval(expr, activation):
    prog = _compiled.get(expr)
    if prog is None:
        prog = ENV.program(ENV.compile(expr))
        _compiled[expr] = prog
    try:
        result = prog.evaluate(activation)
    except celpy.CELEvalError as e:
        return e
    return result


def _matches(policy, req):
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        resources = rule["resources"]
        res = req["resource"]["resource"] + ("/" + req["subResource"] if req["subResource"] else "")
        if (req["resource"]["group"] in rule["apiGroups"] and req["operation"] in rule["operations"]
                and res in resources):
            return True
    return False


def admit(policy, req, obj, old=None):
    """(admitted, message) of `policy` for one request."""
    if not _matches(policy, req):
        return True, "not matched"
    act = {"request": celpy.json_to_cel(req), "object": celpy.json_to_cel(obj),
           "oldObject": celpy.json_to_cel(old)}
    for mc in policy["spec"].get("matchConditions") or []:
        r = _eval(mc["expression"], act)
        if isinstance(r, celpy.CELEvalError):
            return False, f"matchCondition {mc['name']} failed: {r}"
        if not r:
            return True, "not matched"
    variables = {}
    for v in policy["spec"].get("variables") or []:
        act["variables"] = celpy.celtypes.MapType(variables)
        r = _eval(v["expression"], act)
        if isinstance(r, celpy.CELEvalError):
            return False, f"variable {v['name']} failed: {r}"
        variables[celpy.celtypes.StringType(v["name"])] = r
    act["variables"] = celpy.celtypes.MapType(variables)
    for val in policy["spec"]["validations"]:
        r = _eval(val["expression"], act)
        if isinstance(r, celpy.CELEvalError) or not r:
            msg = val.get("message", "")
            if "messageExpression" in val:
                m = _eval(val["messageExpression"], act)
                if not isinstance(m, celpy.CELEvalError):
                    msg = str(m)
            return False, msg if not isinstance(r, celpy.CELEvalError) else f"error: {r}"
    return True, "admitted"


def request(kind, op="CREATE", sub="", user="jane", extra=None):
    group, resource = {
        "Pod": ("", "pods"), "Deployment": ("apps", "deployments"), "StatefulSet": ("apps", "statefulsets"),
        "DaemonSet": ("apps", "daemonsets"), "ReplicaSet": ("apps", "replicasets"), "Job": ("batch", "jobs"),
        "CronJob": ("batch", "cronjobs"), "Node": ("", "nodes"),
    }[kind]
    info = {"username": user}
    if extra is not None:
        info["extra"] = extra
    return {"operation": op, "subResource": sub, "userInfo": info,
            "resource": {"group": group, "version": "v1", "resource": resource}}


# ------------------------------------------------------------------------------------------ pods

def pod_spec(**sc):
    spec = {"containers": [{"name": "app", "image": "app:1"}]}
    if sc.get("pod"):
        spec["securityContext"] = {"appArmorProfile": {"type": "Localhost", "localhostProfile": sc["pod"]}}
    for field in ("containers", "initContainers", "ephemeralContainers"):
        if sc.get(field):
            spec.setdefault(field, [])
            if field != "containers":
                spec[field].append({"name": field.lower(), "image": "tool:1"})
            spec[field][-1]["securityContext"] = {
                "appArmorProfile": {"type": "Localhost", "localhostProfile": sc[field]}}
    return spec


def wrap(kind, spec, annotations=None):
    meta = {"name": "w"}
    if annotations:
        meta["annotations"] = annotations
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    template = {"metadata": meta, "spec": spec}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": "w"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "w"}, "spec": {"template": template}}


KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
ANNOTATION = "container.apparmor.security.beta.kubernetes.io/app"


def check_profiles_policy(policy, known, rendered, ck):
    name = "admission-guard"
    some = sorted(known)[0]
    cases = []
    for kind in KINDS:
        cases += [
            (kind, "no AppArmor at all", wrap(kind, pod_spec()), True, None),
            (kind, f"container profile {some}", wrap(kind, pod_spec(containers=some)), True, None),
            (kind, f"pod-level profile {some}", wrap(kind, pod_spec(pod=some)), True, None),
            (kind, f"annotation localhost/{some}", wrap(kind, pod_spec(), {ANNOTATION: f"localhost/{some}"}), True, None),
            (kind, "annotation runtime/default", wrap(kind, pod_spec(), {ANNOTATION: "runtime/default"}), True, None),
            (kind, "container profile not shipped", wrap(kind, pod_spec(containers="ghost")), False, "ghost"),
            (kind, "pod-level profile not shipped", wrap(kind, pod_spec(pod="ghost-pod")), False, "ghost-pod"),
            (kind, "init container profile not shipped", wrap(kind, pod_spec(initContainers="ghost-init")), False,
             "ghost-init"),
            (kind, "ephemeral container profile not shipped", wrap(kind, pod_spec(ephemeralContainers="ghost-eph")),
             False, "ghost-eph"),
            (kind, "deprecated annotation localhost/ghost", wrap(kind, pod_spec(), {ANNOTATION: "localhost/ghost"}),
             False, "localhost/ghost"),
            (kind, "a known profile beside an unknown one",
             wrap(kind, pod_spec(containers=some, initContainers="ghost2")), False, "ghost2"),
            (kind, "a profile named like a known one plus a suffix",
             wrap(kind, pod_spec(containers=some + "-v2")), False, some + "-v2"),
        ]
    for kind, what, obj, want, needle in cases:
        ok, msg = admit(policy, request(kind), obj)
        good = ok == want and (needle is None or (needle in msg and "profiles/" in msg))
        ck.ok(good, f"cel: {name}: {kind} with {what} is {'admitted' if want else 'rejected'} ({msg})")
    # Ephemeral containers arrive through their own subresource, as an UPDATE of the Pod.
    pod = wrap("Pod", pod_spec(ephemeralContainers="ghost-debug"))
    ok, msg = admit(policy, request("Pod", "UPDATE", "ephemeralcontainers"), pod)
    ck.ok(not ok and "ghost-debug" in msg, f"cel: {name}: kubectl debug with an unknown profile is rejected ({msg})")
    # The repository's own workloads pass: the payment-api example and the agent's DaemonSet.
    for rel, kind, obj_name in (("manifests/examples/payment-api", "Deployment", "payment-api"),
                                ("manifests/base", "DaemonSet", "apparmor-loader")):
        objs = [d for d in rendered.get(rel) or [] if d["kind"] == kind and d["metadata"]["name"] == obj_name]
        if ck.ok(len(objs) == 1, f"cel: {name}: {rel} renders {kind} {obj_name}"):
            ok, msg = admit(policy, request(kind), objs[0])
            ck.ok(ok, f"cel: {name}: the rendered {kind} {obj_name} is admitted ({msg})")
            if kind == "Deployment":
                renamed = copy.deepcopy(objs[0])
                renamed["spec"]["template"]["spec"]["containers"][0]["securityContext"]["appArmorProfile"][
                    "localhostProfile"] = "payment-api-v2"
                ok, msg = admit(policy, request(kind), renamed)
                ck.ok(not ok and "payment-api-v2" in msg,
                      f"cel: {name}: the payment-api Deployment naming payment-api-v2 is rejected ({msg})")


# ----------------------------------------------------------------------------------------- nodes

def node(name="n1", taints=None, labels=None, **spec):
    n = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {"kubernetes.io/os": "linux"}},
         "spec": dict(spec)}
    if taints is not None:
        n["spec"]["taints"] = taints
    return n


def check_node_policy(policy, ck):
    name = "node-taint"
    other = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    sa = {"user": NODE_SA, "extra": {NODE_NAME_CLAIM: ["n1"]}}
    cases = [
        ("removes its taint from its own node", request("Node", "UPDATE", **sa),
         node(taints=[other]), node(taints=[other, TAINT]), True),
        ("adds its taint to its own node", request("Node", "UPDATE", **sa),
         node(taints=[TAINT]), node(), True),
        ("adds its taint beside others", request("Node", "UPDATE", **sa),
         node(taints=[other, TAINT]), node(taints=[other]), True),
        ("removes its taint from another node", request("Node", "UPDATE", **sa),
         node("n2", taints=[]), node("n2", taints=[TAINT]), False),
        ("patches with a token without the node-name claim", request("Node", "UPDATE", user=NODE_SA, extra={}),
         node(taints=[]), node(taints=[TAINT]), False),
        ("patches with a token without extra", request("Node", "UPDATE", user=NODE_SA),
         node(taints=[]), node(taints=[TAINT]), False),
        ("removes another taint", request("Node", "UPDATE", **sa),
         node(taints=[TAINT]), node(taints=[other, TAINT]), False),
        ("adds another taint", request("Node", "UPDATE", **sa),
         node(taints=[other]), node(), False),
        ("adds its taint as NoExecute", request("Node", "UPDATE", **sa),
         node(taints=[dict(TAINT, effect="NoExecute")]), node(), False),
        ("adds its taint with a value", request("Node", "UPDATE", **sa),
         node(taints=[dict(TAINT, value="x")]), node(), False),
        ("changes a label", request("Node", "UPDATE", **sa),
         node(taints=[], labels={"kubernetes.io/os": "linux", "x": "y"}), node(taints=[TAINT]), False),
        ("cordons the node", request("Node", "UPDATE", **sa),
         node(taints=[], unschedulable=True), node(taints=[TAINT]), False),
        ("changes the node's status", request("Node", "UPDATE", sub="status", **sa),
         node(taints=[TAINT]), node(taints=[TAINT]), False),
        ("deletes the node", request("Node", "DELETE", **sa), None, node(), False),
    ]
    for what, req, obj, old, want in cases:
        ok, msg = admit(policy, req, obj, old)
        ck.ok(ok == want, f"cel: {name}: the agent's service account {what}: "
                          f"{'admitted' if want else 'rejected'} ({msg})")
    ok, msg = admit(policy, request("Node", "UPDATE", user="system:node:n1"),
                    node(taints=[], labels={"a": "b"}), node(taints=[TAINT]))
    ck.ok(ok and msg == "not matched", f"cel: {name}: other users (the kubelet) are not affected ({msg})")


# ---------------------------------------------------------------------------------------- entry

def generated_policy(agent, root, tmp):
    out = os.path.join(tempfile.mkdtemp(dir=tmp), "policy.yaml")
    r = subprocess.run([agent, "admission-policy", "--profiles", "profiles", "-o", out], cwd=root,
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None, r.stderr.strip()
    with open(out, encoding="utf-8") as f:
        return f.read(), ""


def check(rendered, root, agent, profile_names, ck, tmp):
    """profile_names: the top-level names of profiles/ (file names, which the tests elsewhere tie
    to the names inside)."""
    guard = rendered.get("manifests/components/admission-guard") or []
    vaps = [d for d in guard if d["kind"] == "ValidatingAdmissionPolicy"]
    binds = [d for d in guard if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    if ck.ok(len(vaps) == 1 and len(binds) == 1 and binds[0]["spec"]["policyName"] == vaps[0]["metadata"]["name"]
             and binds[0]["spec"]["validationActions"] == ["Deny"],
             "cel: admission-guard renders one policy and a Deny binding to it"):
        known = _eval(vaps[0]["spec"]["variables"][0]["expression"], {})
        ck.ok(sorted(str(k) for k in known) == sorted(profile_names),
              f"cel: admission-guard knows exactly the profiles of profiles/ ({sorted(str(k) for k in known)})")
        check_profiles_policy(vaps[0], profile_names, rendered, ck)
    path = os.path.join(root, "manifests/components/admission-guard/policy.yaml")
    if agent is None:
        ck.skip("cel: no built apparmor-loader to regenerate admission-guard/policy.yaml with")
    else:
        text, err = generated_policy(agent, root, tmp)
        with open(path, encoding="utf-8") as f:
            ck.ok(text is not None and text == f.read(),
                  "cel: admission-guard/policy.yaml is what `apparmor-loader admission-policy --profiles profiles` "
                  "prints now (regenerate it after changing profiles/)" + (f": {err}" if err else ""))
    taint = rendered.get("manifests/components/node-taint") or []
    vaps = [d for d in taint if d["kind"] == "ValidatingAdmissionPolicy"]
    if ck.ok(len(vaps) == 1, "cel: node-taint renders one ValidatingAdmissionPolicy"):
        check_node_policy(vaps[0], ck)


# ------------------------------------------------------------------------------------- mutations

def _guard_mutations():
    def known_ghost(p):
        v = p["spec"]["variables"][0]
        v["expression"] = v["expression"].replace("[", '["ghost", ', 1)

    def no_annotations(p):
        next(v for v in p["spec"]["variables"] if v["name"] == "annotations")["expression"] = "{}"

    def no_init(p):
        v = next(v for v in p["spec"]["variables"] if v["name"] == "named")
        v["expression"] = v["expression"].replace("has(variables.spec.initContainers)", "false", 1)

    return [("the known list also holds ghost", known_ghost), ("annotations are ignored", no_annotations),
            ("init containers are ignored", no_init)]


def _node_mutations():
    def drop(needle):
        def f(p):
            p["spec"]["validations"] = [v for v in p["spec"]["validations"] if needle not in v["expression"]]
        return f

    def other_sa(p):
        p["spec"]["matchConditions"][0]["expression"] = p["spec"]["matchConditions"][0]["expression"].replace(
            "apparmor-loader'", "someone-else'")

    return [("no node-name check", drop(NODE_NAME_CLAIM)), ("other taints may change", drop("otherTaints")),
            ("labels may change", drop("metadata.labels")), ("it applies to another service account", other_sa)]


def check_mutations(rendered, ck):
    """Each policy check is shown to fail on a broken copy of the policy."""
    guard = [d for d in rendered.get("manifests/components/admission-guard") or []
             if d["kind"] == "ValidatingAdmissionPolicy"]
    node_p = [d for d in rendered.get("manifests/components/node-taint") or []
              if d["kind"] == "ValidatingAdmissionPolicy"]
    for policies, mutations, run in ((guard, _guard_mutations(),
                                      lambda p, probe: check_profiles_policy(p, ["nginx-web"], rendered, probe)),
                                     (node_p, _node_mutations(), check_node_policy)):
        for what, mutate in mutations:
            if not policies:
                continue
            p = copy.deepcopy(policies[0])
            mutate(p)
            probe = ck.__class__(quiet=True)
            run(p, probe)
            ck.ok(probe.failed > 0, f"mutation: {p['metadata']['name']} with {what} is caught"
                  + (f" ({probe.failures[0]})" if probe.failures else ""))
