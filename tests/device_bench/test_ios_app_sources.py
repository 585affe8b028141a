"""The Swift app (ios_app/) is never compiled here: check its sources against the contract instead. Every
required key of the three protocol schemas is spelled as a JSON key in BenchKit, every Core ML compute unit
the job schema allows is mapped, and the bundle the host installs / launches / copies into is the one
project.yml builds (bundle id, executable, version, file sharing)."""
from __future__ import annotations

import plistlib
import re
from pathlib import Path

import pytest
import yaml

from edgevit_deploy.device_bench.jobs import protocol as P
from edgevit_deploy.device_bench.jobs.builder import COMPUTE_UNITS

APP = Path(__file__).resolve().parents[2] / "ios_app"
SWIFT = sorted((APP / "BenchKit" / "Sources" / "BenchKit").glob("*.swift"))


def required_keys(node: object) -> set[str]:
    """Every name listed under a ``required`` anywhere in a schema (objects nested in properties and $defs)."""
    keys: set[str] = set()
    if isinstance(node, dict):
        keys.update(node.get("required", []) if isinstance(node.get("required"), list) else [])
        for value in node.values():
            keys |= required_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= required_keys(value)
    return keys


def coding_keys(text: str) -> set[str]:
    """The JSON names of CodingKeys cases: ``case jobId = "job_id"`` -> job_id."""
    return set(re.findall(r'\b\w+\s*=\s*"([a-z0-9_]+)"', text))


@pytest.mark.parametrize("name", P.SCHEMAS)
def test_benchkit_names_every_required_schema_key(name):
    protocol_swift = (APP / "BenchKit/Sources/BenchKit/Protocol.swift").read_text()
    missing = sorted(required_keys(P.schema(name)) - coding_keys(protocol_swift))
    assert not missing, f"BenchKit's Protocol.swift lacks CodingKeys for {name} keys {missing}"


def test_compute_units_are_mapped_both_ways():
    runner = (APP / "BenchKit/Sources/BenchKit/CoreMLRunner.swift").read_text()
    allowed = set(P.schema("job")["properties"]["runtime"]["properties"]["delegate"]["enum"])
    for units in COMPUTE_UNITS.values():
        assert units in allowed
        assert re.search(rf'case "{units}": return \.\w+', runner), f"CoreMLRunner.swift does not map {units}"
    assert "MLModel.compileModel(at:" in runner and "config.computeUnits" in runner


def test_swift_files_write_the_protocol_files_the_host_reads():
    text = "\n".join(p.read_text() for p in SWIFT)
    for const, value in (("jobsDir", P.JOBS_DIR), ("resultsDir", P.RESULTS_DIR), ("statusFile", P.STATUS_FILE),
                         ("jobFile", P.JOB_FILE), ("appVersion", P.APP_VERSION)):
        assert re.search(rf'public let {const} = "{re.escape(value)}"', text), const
    assert re.search(rf"public let supportedProtocol = {P.PROTOCOL_VERSION}\b", text)
    assert "thermalState" in text and "batteryLevel" in text


def test_bundle_is_the_one_the_host_expects():
    project = yaml.safe_load((APP / "project.yml").read_text())
    target = project["targets"][P.IOS_EXECUTABLE]
    settings = target["settings"]["base"]
    assert settings["PRODUCT_BUNDLE_IDENTIFIER"] == P.IOS_BUNDLE_ID
    assert settings["PRODUCT_NAME"] == P.IOS_EXECUTABLE
    assert settings["MARKETING_VERSION"] == P.APP_VERSION
    assert project["options"]["deploymentTarget"]["iOS"] == "16.0"
    info = plistlib.loads((APP / settings["INFOPLIST_FILE"]).read_bytes())
    assert info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    assert info["CFBundleShortVersionString"] == "$(MARKETING_VERSION)"
    readme = (APP / "README.md").read_text()
    assert "DEVELOPMENT_TEAM" in readme and "-exportArchive" in readme and "never compiled here" in readme.lower()
