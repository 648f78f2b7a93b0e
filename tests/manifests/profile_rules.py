#!/usr/bin/env python3
"""Prove that every rule in a profile file does something.

AppArmor gives no warning for a rule that is shadowed or can never matter, so
this compiles each profile to its binary policy (apparmor_parser -Q -S, against
Debian 12's pinned kernel feature set) and checks, for every rule line written
in the file itself (abstractions are not ours to judge):

  * an allow rule or an include: removing it must change the compiled policy;
    otherwise it is redundant (granted elsewhere) or not enforced by the
    kernel's feature set (dbus, fine-grained unix on Debian's 6.1 kernel).
  * a deny rule: on its own it usually compiles to nothing, because AppArmor
    refuses whatever is not allowed. Its job is to win over any allow rule
    added later. So it is checked against the profile plus broad allows
    ("file, network, capability,"): removing it must then change the policy.
    It must also be "audit deny": a plain deny is quiet by design and would
    turn the logged default refusal into a silent one.

Also: a header comment, "abi <abi/3.0>", and exactly one top-level profile
whose name (apparmor_parser -N) is the file name.

Usage: profile_rules.py FEATURES_FILE PROFILE...
Prints one "ok"/"FAIL" line per check and exits 1 if any failed.
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile

BROAD_ALLOWS = ["  file,", "  network,", "  capability,"]


def compile_policy(features, name, lines):
    """Return (ok, sha256 of the binary policy, stderr) for the given text."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run(
            ["apparmor_parser", "-Q", "-K", "-q", "-M", features, "-S", path],
            capture_output=True,
            check=False,
        )
        return r.returncode == 0, hashlib.sha256(r.stdout).hexdigest(), r.stderr.decode(errors="replace")


def rule_lines(lines):
    """(index, text) of every rule or include inside the profile block, and
    the index of the profile's closing brace. Profiles here keep one rule per
    line, and a block opens with a line ending in "{" and closes with "}"."""
    rules, depth, close = [], 0, None
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        code = stripped if stripped.startswith("include") else stripped.split("#", 1)[0].strip()
        if not code:
            continue
        if depth >= 1 and (code.endswith(",") or code.startswith("include ")):
            rules.append((i, code))
        if code.endswith("{"):
            depth += 1
        elif code == "}":
            depth -= 1
            if depth == 0 and close is None:
                close = i
    return rules, close


def check_profile_file(path, features, report):
    """Run every check on one profile file; report(ok, message) records each."""
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]

    report(bool(lines) and lines[0].startswith("#") and sum(1 for l in lines[:15] if l.startswith("#")) >= 5,
           f"{path}:1: starts with a header comment explaining the profile")
    report(any(l.strip() == "abi <abi/3.0>," for l in lines),
           f"{path}: declares abi <abi/3.0>")
    r = subprocess.run(["apparmor_parser", "-N", "-M", features, path],
                       capture_output=True, text=True, check=False)
    names = r.stdout.split()
    report(r.returncode == 0 and names == [name],
           f"{path}: defines exactly one profile, named after the file (found {names or r.stderr.strip()})")

    ok, base, err = compile_policy(features, name, lines)
    if not ok:
        report(False, f"{path}: does not compile, rule checks skipped: {err.strip()}")
        return
    rules, close = rule_lines(lines)
    if close is None:
        report(False, f"{path}: closing brace of the profile not found")
        return
    broad = lines[:close] + BROAD_ALLOWS + lines[close:]
    ok_b, with_broad, err = compile_policy(features, name, broad)
    if not ok_b:
        report(False, f"{path}: does not compile with broad allows added: {err.strip()}")
        return
    for i, rule in rules:
        where = f"{path}:{i + 1}: {rule}"
        if re.match(r"^(audit\s+)?deny\b", rule):
            report(rule.startswith("audit deny"),
                   f"{where} -- is 'audit deny' (a plain deny silences the log)")
            shifted = i if i < close else i + len(BROAD_ALLOWS)
            _, h, _ = compile_policy(features, name, broad[:shifted] + broad[shifted + 1:])
            report(h != with_broad, f"{where} -- still refuses when a broad allow is added")
        else:
            _, h, _ = compile_policy(features, name, lines[:i] + lines[i + 1:])
            report(h != base,
                   f"{where} -- changes the compiled policy (not redundant, enforced by the kernel ABI)")


def main():
    features, paths = sys.argv[1], sys.argv[2:]
    counts = {"passed": 0, "failed": 0}

    def report(ok, what):
        counts["passed" if ok else "failed"] += 1
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    for path in paths:
        check_profile_file(path, features, report)
    print(f"{counts['passed']} passed, {counts['failed']} failed")
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
