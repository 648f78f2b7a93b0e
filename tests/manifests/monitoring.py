"""Checks of the fleet monitoring components (called by check.py):

  rules      the PrometheusRule of components/prometheus-rules passes `promtool check rules`, and
             `promtool test rules` with tests/manifests/rules-test.yaml; every alert has a severity,
             a summary, a description and a runbook section of docs/operating.md; each alert's
             unit tests are shown to fail on a broken copy of its rule
  dashboard  components/grafana-dashboard renders one ConfigMap, labelled for the Grafana sidecar,
             without a hash suffix, holding one dashboard whose every panel queries the datasource
             variable

That the expressions name only exported metrics is tests/fleet_monitoring.rs's job: it has the agent.
"""

import copy
import json
import os
import re
import shutil
import subprocess

import yaml

RULES = "manifests/components/prometheus-rules"
DASHBOARD = "manifests/components/grafana-dashboard"
RULES_TEST = "tests/manifests/rules-test.yaml"
SIDECAR_LABEL = ("grafana_dashboard", "1")


def _promtool(args, cwd):
    r = subprocess.run(["promtool"] + args, cwd=cwd, capture_output=True, text=True, check=False)
    return r.returncode, (r.stdout + r.stderr).strip()


def _test_rules(spec, root, tmp, name):
    """Runs promtool check + test on `spec` (the PrometheusRule's spec) in a fresh directory."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "rules.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    shutil.copy(os.path.join(root, RULES_TEST), os.path.join(d, "rules-test.yaml"))
    return _promtool(["check", "rules", "rules.yaml"], d), _promtool(["test", "rules", "rules-test.yaml"], d)


def _alerts(spec):
    return [r for g in spec.get("groups") or [] for r in g.get("rules") or [] if "alert" in r]


def _anchors(root):
    with open(os.path.join(root, "docs/operating.md"), encoding="utf-8") as f:
        return {re.sub(r"[^a-z0-9_-]", "", l[4:].strip().lower().replace(" ", "-"))
                for l in f if l.startswith("### ")}


# Each mutation breaks one alert; its unit tests must then fail.
RULE_MUTATIONS = [
    ("ApparmorLoaderFileFailed", "counts stale files too", lambda r: r.update(expr=r["expr"].replace("failed|refused", "failed|refused|stale"))),
    ("ApparmorLoaderProfileStale", "waits 30 minutes", lambda r: r.update({"for": "30m"})),
    ("ApparmorLoaderSyncStalled", "allows 15 minutes", lambda r: r.update(expr=r["expr"].replace("300", "900"))),
    ("ApparmorLoaderDriftRepeated", "fires on one repair", lambda r: r.update(expr=r["expr"].replace("> 3", "> 0"))),
    ("ApparmorLoaderAuditSourceDown", "fires when monitoring is off", lambda r: r.update(expr="apparmor_loader_audit_source_up == 0")),
    ("ApparmorLoaderDenialSpike", "ignores the baseline", lambda r: r.update(expr='sum without (operation) (rate(apparmor_loader_audit_denials_total{profile!="other"}[5m])) > 0.5')),
    ("ApparmorLoaderVersionSkew", "fires during a rollout", lambda r: r.update({"for": "5m"})),
]


def check_rules(rendered, root, ck, tmp):
    docs = rendered.get(RULES) or []
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if not ck.ok(len(rules) == 1, f"rules: {RULES} renders one PrometheusRule"):
        return
    pr = rules[0]
    spec = pr["spec"]
    ck.ok(pr["metadata"].get("namespace") == "apparmor-loader", "rules: the PrometheusRule is in the agent's namespace")
    (crc, cout), (trc, tout) = _test_rules(spec, root, tmp, "rules")
    ck.ok(crc == 0, "rules: promtool check rules passes" + ("" if crc == 0 else f": {cout}"))
    ck.ok(trc == 0, "rules: promtool test rules passes on tests/manifests/rules-test.yaml" + ("" if trc == 0 else f": {tout}"))
    alerts = _alerts(spec)
    names = {a["alert"] for a in alerts}
    wanted = {m[0] for m in RULE_MUTATIONS}
    ck.ok(names == wanted, f"rules: the alerts are the seven of issue 16 ({sorted(names)})")
    with open(os.path.join(root, RULES_TEST), encoding="utf-8") as f:
        tested = {t.get("alertname") for case in yaml.safe_load(f)["tests"] for t in case.get("alert_rule_test") or []}
    ck.ok(names <= tested, f"rules: every alert has unit tests (untested: {sorted(names - tested) or 'none'})")
    anchors = _anchors(root)
    for a in alerts:
        ann = a.get("annotations") or {}
        ok = (a.get("labels") or {}).get("severity") in ("warning", "critical") and ann.get("summary") and ann.get("description")
        ck.ok(ok, f"rules: {a['alert']} has a severity, a summary and a description")
        runbook = ann.get("runbook", "")
        ck.ok(runbook.startswith("docs/operating.md#") and runbook.split("#", 1)[1] in anchors,
              f"rules: {a['alert']}'s runbook {runbook!r} is a section of docs/operating.md")
    for alert, what, mutate in RULE_MUTATIONS:
        broken = copy.deepcopy(spec)
        target = [r for r in _alerts(broken) if r["alert"] == alert]
        if not ck.ok(len(target) == 1, f"mutation: rules: {alert} exists to be broken"):
            continue
        mutate(target[0])
        (crc, _), (trc, _) = _test_rules(broken, root, tmp, f"mut-{alert}")
        ck.ok(crc == 0 and trc != 0, f"mutation: rules: {alert} that {what} fails its unit tests")


def check_dashboard(rendered, ck):
    docs = rendered.get(DASHBOARD) or []
    cms = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("apparmor-loader-dashboard")]
    if not ck.ok(len(cms) == 1, f"dashboard: {DASHBOARD} renders one dashboard ConfigMap"):
        return
    cm = cms[0]
    labels = cm["metadata"].get("labels") or {}
    ck.ok(labels.get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1],
          f"dashboard: labelled {SIDECAR_LABEL[0]}={SIDECAR_LABEL[1]!r} for the Grafana sidecar ({labels})")
    ck.ok(cm["metadata"]["name"] == "apparmor-loader-dashboard",
          "dashboard: the ConfigMap has no hash suffix (an old copy would be a second dashboard)")
    data = cm.get("data") or {}
    ck.ok(len(data) == 1 and all(k.endswith(".json") for k in data), f"dashboard: one .json key ({sorted(data)})")
    for key, text in data.items():
        try:
            dash = json.loads(text)
        except ValueError as e:
            ck.ok(False, f"dashboard: {key} is JSON: {e}")
            continue
        panels = [p for p in dash.get("panels") or [] if p.get("type") != "row"]
        ck.ok(dash.get("uid") and dash.get("title") and len(panels) >= 6, f"dashboard: {key} has a uid, a title and panels")
        variables = [v.get("name") for v in (dash.get("templating") or {}).get("list") or [] if v.get("type") == "datasource"]
        ck.ok("datasource" in variables, "dashboard: a datasource variable, so it works with any Prometheus")
        bad = [p.get("title") for p in panels
               if (p.get("datasource") or {}).get("uid") != "${datasource}"
               or not p.get("targets")
               or any((t.get("datasource") or {}).get("uid") != "${datasource}" or not t.get("expr") for t in p["targets"])]
        ck.ok(not bad, f"dashboard: every panel and query uses ${{datasource}} and has a query (not: {bad or 'none'})")
        titles = " ".join(p.get("title", "").lower() for p in panels)
        for topic in ("ready", "state", "version", "parser", "denials", "audit source"):
            ck.ok(topic in titles, f"dashboard: a panel about {topic}")


def check_monitoring(rendered, root, ck, tmp):
    check_rules(rendered, root, ck, tmp)
    check_dashboard(rendered, ck)
