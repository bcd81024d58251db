#!/usr/bin/python3
"""Evaluates every expression of kvpack's Grafana dashboard and alert rules through a live
Prometheus's HTTP API (tests/ops/prometheus_test.sh starts one scraping a real kvpack_server).

Fails (exit 1) if any expression is rejected, returns no series, or names a metric of which
Prometheus has no series, or if Prometheus did not load every alert rule healthy. Alert
expressions end in one comparison with a threshold (deploy/prometheus/kvpack-alerts.yaml says
so); the part before it must return series, the whole is evaluated too and reported as firing
or not. Prints each expression with its values.

  check_expressions.py PROM_URL DASHBOARD.json ALERTS.yaml JOB
"""
import json
import re
import sys
import urllib.parse
import urllib.request

import yaml

COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.eE+-]+\s*$")
METRIC = re.compile(r"\b((?:kvpack|process)_[a-z0-9_]+|up)\b(?!\s*\()")


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "no error text")
    return body["data"]["result"], None


def dashboard_expressions(path, job):
    dash = json.load(open(path))
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "30s")
                    .replace("$job", job).replace("$instance", ".*"))
            out.append((f"dashboard: {panel['title']} [{target['refId']}]", expr))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            # label_values(SELECTOR, label) is Grafana's; the selector must match series.
            m = re.match(r"label_values\((.*),\s*\w+\)$", var["definition"])
            out.append((f"dashboard variable ${var['name']}",
                        m.group(1).replace("$job", job)))
    return out


def alert_rules(path):
    rules = []
    for group in yaml.safe_load(open(path))["groups"]:
        rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def show(result):
    parts = []
    for sample in result[:6]:
        labels = {k: v for k, v in sample["metric"].items() if k not in ("job", "instance")}
        label_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        parts.append(f"{{{label_text}}} {float(sample['value'][1]):.4g}")
    if len(result) > 6:
        parts.append(f"... {len(result) - 6} more")
    return "; ".join(parts)


def main():
    base, dashboard, alerts, job = sys.argv[1:5]
    failures = []
    checked = []  # (name, expression) pairs that must return series
    checked.extend(dashboard_expressions(dashboard, job))
    rules = alert_rules(alerts)
    for rule in rules:
        expr = rule["expr"].strip()
        value_part = COMPARISON.sub("", expr)
        if value_part == expr:
            failures.append(f"alert {rule['alert']}: expression does not end in a comparison")
        checked.append((f"alert {rule['alert']} (value)", value_part))

    for name, expr in checked:
        result, error = query(base, expr)
        flat = " ".join(expr.split())
        if error is not None:
            failures.append(f"{name}: invalid: {error}\n    {flat}")
        elif not result:
            failures.append(f"{name}: no series\n    {flat}")
        else:
            print(f"OK   {name}: {show(result)}\n       {flat}")

    for rule in rules:
        result, error = query(base, rule["expr"])
        if error is not None:
            failures.append(f"alert {rule['alert']}: invalid: {error}")
        else:
            state = f"FIRING ({show(result)})" if result else "not firing"
            print(f"OK   alert {rule['alert']}: {state}")

    names = sorted({m for _, e in checked for m in METRIC.findall(e)})
    for metric in names:
        result, error = query(base, f'count({{__name__="{metric}", job="{job}"}})')
        if error is not None or not result:
            failures.append(f"metric {metric}: Prometheus has no series of it")
    print(f"OK   {len(names)} metric names referenced, all scraped: {' '.join(names)}")

    with urllib.request.urlopen(base + "/api/v1/rules", timeout=10) as reply:
        loaded = {r["name"]: r for g in json.load(reply)["data"]["groups"] for r in g["rules"]}
    for rule in rules:
        got = loaded.get(rule["alert"])
        if got is None:
            failures.append(f"alert {rule['alert']}: not loaded by Prometheus")
        elif got.get("health") != "ok":
            failures.append(f"alert {rule['alert']}: health {got.get('health')}: "
                            f"{got.get('lastError')}")

    print(f"{len(checked)} expressions with series, {len(rules)} alerts evaluated, "
          f"{len(failures)} failures")
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
