"""Print the openAPIV3Schema of a CRD's storage version as JSON: `python extract_schema.py < crd.yaml > x.json`.

The full CRD YAML files are large (KServe's InferenceService is about 2 MB); the tests need only the schema.
"""

import json
import sys

import yaml


def storage_schema(crd: dict) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    return {
        "x-crd": {"group": crd["spec"]["group"], "kind": crd["spec"]["names"]["kind"], "version": version["name"]},
        **version["schema"]["openAPIV3Schema"],
    }


if __name__ == "__main__":
    crds = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "CustomResourceDefinition"]
    (crd,) = crds
    json.dump(storage_schema(crd), sys.stdout, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")
