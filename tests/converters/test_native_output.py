"""Native libraries write to file descriptors 1 and 2 past sys.stdout (absl, LiteRT's delegate line, ExecuTorch's
cpuinfo probe): ``native_output_to_log`` keeps those lines out of the user's terminal and in the debug log."""

from __future__ import annotations

import logging
import os

import pytest

from edgevit_deploy.converters._quiet import native_output_to_log


@pytest.fixture
def caplog(caplog, monkeypatch):
    """Only caplog sees the backend logger's records: an earlier in-process CLI run may have left a stderr
    handler on the root logger, which would print them into the captured stderr."""
    logger = logging.getLogger("edgevit_deploy.converters.backend")
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    caplog.set_level(logging.DEBUG, logger=logger.name)
    return caplog


def test_writes_to_both_descriptors_go_to_the_debug_log_and_the_descriptors_come_back(capfd, caplog):
    with native_output_to_log():
        os.write(1, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        with native_output_to_log():  # nested: still captured, restored once
            os.write(2, b"[threadpool.cpp:66] Resetting threadpool to 1 threads.\n")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "after\n"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in ("Reading file /sys/devices/soc0/image_version", "XNNPACK delegate for CPU", "Resetting threadpool"):
        assert line in logged


def test_an_exception_inside_restores_the_descriptors(capfd, caplog):
    try:
        with native_output_to_log():
            os.write(2, b"swallowed\n")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
