"""The device job protocol shared by the on-device apps (Android ``android_app/``, iOS next) and the host."""
from .protocol import (APP_ACTIVITY, APP_INSTRUMENTATION, APP_PACKAGE, APP_VERSION, PROTOCOL_VERSION, Job,
                       ModelRef, ProtocolError, Result, RuntimeRef, Status, Tensor, Thermal, pending_jobs,
                       read_job, read_outputs, read_result, read_status, write_job)

__all__ = ["APP_ACTIVITY", "APP_INSTRUMENTATION", "APP_PACKAGE", "APP_VERSION", "PROTOCOL_VERSION", "Job",
           "ModelRef", "ProtocolError", "Result", "RuntimeRef", "Status", "Tensor", "Thermal", "pending_jobs",
           "read_job", "read_outputs", "read_result", "read_status", "write_job"]
