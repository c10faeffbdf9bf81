#!/usr/bin/env python3
"""Render (and lint) the minerwatch chart offline, like `helm template`.

Uses helm-python-sdk, which embeds Helm's own Go engine, for machines without
the helm binary:

    pip install helm-python-sdk==0.2.2
    python3 deploy/helm/render.py [--set-json '{"enforce": true}'] [--lint]

Prints the rendered objects as one multi-document YAML stream (release
"minerwatch" in namespace "minerwatch"). Exit status 3 when the SDK is not
installed, so callers can tell "cannot render here" from a broken chart.
"""

import argparse
import json
import os
import sys

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "minerwatch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set-json", default="{}", help="values overriding values.yaml, as JSON")
    parser.add_argument("--lint", action="store_true", help="also run `helm lint --strict`")
    parser.add_argument("--release", default="minerwatch")
    parser.add_argument("--namespace", default="minerwatch")
    args = parser.parse_args()
    try:
        import helm_python as helm
    except ImportError:
        print("render.py: helm_python not installed (pip install helm-python-sdk==0.2.2)", file=sys.stderr)
        return 3
    values = json.loads(args.set_json)
    if args.lint:
        report = helm.lint(CHART, values, strict=True, namespace=args.namespace)
        problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        for m in problems:
            print(f"render.py: lint: {m.get('path')}: {m.get('error')}", file=sys.stderr)
        if problems or report.get("errors"):
            return 1
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        sys.stdout.write(f"---\n# Source: {path}\n{text.strip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
