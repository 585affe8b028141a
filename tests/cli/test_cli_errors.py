"""One error handler and exit-code policy for every command (cli/_common.py): bad input is one ``error:`` line
and exit 2, a failed run exit 1, an error class may declare its own code, click's usage errors are one line."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgevit_deploy.cli._common import EXIT_FAILED, EXIT_USAGE, exit_code_for
from edgevit_deploy.device_bench.errors import DeviceCommandError, DeviceIdError, DeviceNotFoundError
from edgevit_deploy.device_bench.store import StoreError, StoreWriteError
from edgevit_deploy.errors import ConversionError, OutputDirError, UnknownModelError


@pytest.mark.parametrize("exc,code", [
    (UnknownModelError("nope"), EXIT_USAGE),                   # ValueError: bad input
    (OutputDirError("x"), EXIT_USAGE),                         # OSError: bad input
    (ConversionError("onnx", "boom"), EXIT_FAILED),            # a failure
    (StoreError("not a store"), EXIT_USAGE),                   # declared: a --store that cannot be used
    (StoreWriteError("disk full"), EXIT_FAILED),               # declared: the run failed part-way
    (DeviceNotFoundError("adb:X", "unknown"), EXIT_USAGE),     # declared: no such device
    (DeviceCommandError("adb:X", "ls", 1, ""), EXIT_FAILED),   # a device operation failed
    (DeviceIdError("phone"), EXIT_USAGE),
])
def test_the_exit_code_policy(exc, code):
    assert exit_code_for(exc) == code


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Usage:" not in result.stderr
    return lines[0]


def test_usage_errors_are_one_line_in_every_command():
    from edgevit_deploy.cli.bench_cmd import main as bench
    from edgevit_deploy.cli.eval_cmd import main as evaluate
    from edgevit_deploy.cli.export_cmd import main as export
    from edgevit_deploy.cli.verify_cmd import main as verify

    for command, argv, fragment in (
        (export, ["--bogus"], "No such option '--bogus'"),
        (export, ["-m", "edgevit_xxs", "--coreml-executor", "nope"], "Invalid value for '--coreml-executor'"),
        (verify, ["x.onnx"], "Missing option '--model'"),
        (evaluate, ["--bogus"], "No such option '--bogus'"),
        (bench, ["show", "--status", "done"], "Invalid value for '--status'"),
        (bench, ["sweep", "--models", "edgevit_xxs", "--runner", "daemon"], "Invalid value for '--runner'"),
    ):
        result = CliRunner().invoke(command, argv)
        assert result.exit_code == EXIT_USAGE, (argv, result.output)
        assert fragment in _one_error_line(result)


def test_bench_uses_the_shared_handler_for_bad_input_and_failures(tmp_path, monkeypatch):
    from edgevit_deploy.cli.bench_cmd import main as bench
    from edgevit_deploy.device_bench import api

    result = CliRunner().invoke(bench, ["doctor", "--device", "local"])
    assert result.exit_code == EXIT_USAGE
    assert "doctor checks Android devices" in _one_error_line(result)

    def unreadable(store, *args, **kwargs):
        raise StoreWriteError("cannot write to the result store s.sqlite: disk is full\n(free disk space)")

    monkeypatch.setattr(api, "read_rows", unreadable)
    result = CliRunner().invoke(bench, ["show", "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == EXIT_FAILED                    # the class's declared code, not "always 2"
    assert result.stderr.startswith("error: cannot write to the result store")


def test_the_choices_come_from_the_package_constants():
    from edgevit_deploy.cli.bench_cmd import RUNNER_CHOICES_SHOWN, sweep
    from edgevit_deploy.cli.export_cmd import main as export
    from edgevit_deploy.device_bench.sweep_config import RUNNER_CHOICES
    from edgevit_deploy.quantize.base import ACTIVATION_DTYPES, CALIB_METHODS
    from edgevit_deploy.verify.runtimes import CoremlHost

    choices = {p.name: list(p.type.choices) for p in export.params if hasattr(p.type, "choices")}
    assert choices["calib_method"] == list(CALIB_METHODS)
    assert choices["activation_dtype"] == list(ACTIVATION_DTYPES)
    assert choices["coreml_executor"] == list(CoremlHost.executors)
    runner = next(p for p in sweep.params if p.name == "runner")
    assert set(runner.type.choices) == {"tool", *RUNNER_CHOICES} - {"default"} == set(RUNNER_CHOICES_SHOWN)
