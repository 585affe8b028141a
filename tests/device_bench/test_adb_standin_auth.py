"""The stand-in adbd is safe to run: the real adbd AUTH flow against authorized keys, unknown keys refused,
file transfers confined to its root, auth on by default on the command line with a loud warning, and it
needs the ``testing`` extra. Also: a direct adbd link (``adb:HOST:PORT``) whose adbd dies mid-command is
noticed at once (EOF), not after the command's timeout."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgevit_deploy.device_bench.errors import DeviceDisconnectedError, DeviceError
from edgevit_deploy.device_bench.testing import standin_adbd as sa
from edgevit_deploy.device_bench.testing.standin_adbd import StandinAdbd
from edgevit_deploy.device_bench.transports.adb_shell import AdbShellTransport, load_or_create_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two adb key pairs (adb-shell's keygen writes KEY and KEY.pub in adb's formats)."""
    base = tmp_path_factory.mktemp("adbkeys")
    out = {}
    for name in ("mine", "stranger"):
        load_or_create_key(base / name / "adbkey")
        out[name] = base / name / "adbkey"
    return out


def _connect(dev: StandinAdbd, key: Path, **kw) -> AdbShellTransport:
    return AdbShellTransport("127.0.0.1", dev.port, key_path=key, connect_timeout_s=5, **kw).connect()


def test_an_authorized_key_connects_and_an_unknown_key_is_refused(tmp_path, keys):
    pub = Path(f"{keys['mine']}.pub")
    with StandinAdbd(tmp_path / "phone", auth=True, authorized_keys=[pub]) as dev:
        t = _connect(dev, keys["mine"])
        assert t.shell("echo ok", timeout=30).stdout.strip() == "ok"
        t.close()
        marker = tmp_path / "phone" / "data" / "local" / "tmp" / "pwned"
        start = time.monotonic()
        with pytest.raises(DeviceError):
            _connect(dev, keys["stranger"]).shell("touch /data/local/tmp/pwned", timeout=10)
        assert time.monotonic() - start < 8          # refused and hung up, not a client spinning on a dead link
        assert not marker.exists()
        assert dev.refused_keys and dev.refused_keys[0].split()[0] == Path(f"{keys['stranger']}.pub").read_text().split()[0]
        assert dev.public_keys == []


def test_a_new_key_is_accepted_only_with_accept_new_keys(tmp_path, keys):
    with StandinAdbd(tmp_path / "phone", auth=True, accept_new_keys=True) as dev:
        t = _connect(dev, keys["stranger"])
        assert t.shell("echo ok", timeout=30).stdout.strip() == "ok"
        t.close()
        assert len(dev.public_keys) == 1
    with pytest.raises(ValueError, match="authorized_keys"):
        StandinAdbd(tmp_path / "phone2", auth=True)


# ------------------------------------------------------------------------------ the wire protocol
def _send(sock, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
    sock.sendall(sa._pack(command, arg0, arg1, data))


def _recv(sock) -> tuple[int, int, int, bytes]:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    command, arg0, arg1, length, _check, magic = sa._HEADER.unpack(exact(24))
    assert magic == command ^ 0xFFFFFFFF
    return command, arg0, arg1, exact(length) if length else b""


def test_the_token_signature_is_verified_as_adbd_does(tmp_path, keys):
    """Raw protocol, signed with `cryptography` (not adb-shell's signer): a bad signature gets a fresh token
    and no service; the token signed as adb signs it (PKCS#1 v1.5, SHA-1 DigestInfo of the token) connects."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    private = serialization.load_pem_private_key(keys["mine"].read_bytes(), password=None)
    with StandinAdbd(tmp_path / "phone", auth=True, authorized_keys=[Path(f"{keys['mine']}.pub")]) as dev, \
            socket.create_connection(("127.0.0.1", dev.port), timeout=10) as sock:
        _send(sock, sa.A_CNXN, sa.A_VERSION, 4096, b"host::\0")
        command, kind, _, token = _recv(sock)
        assert (command, kind, len(token)) == (sa.A_AUTH, sa.AUTH_TOKEN, 20)
        _send(sock, sa.A_AUTH, sa.AUTH_SIGNATURE, 0, secrets.token_bytes(256))
        command, kind, _, token2 = _recv(sock)
        assert (command, kind) == (sa.A_AUTH, sa.AUTH_TOKEN) and token2 != token
        _send(sock, sa.A_OPEN, 1, 0, b"shell:touch /data/local/tmp/pwned\0")   # ignored before auth
        # a valid signature of the OLD token is refused too (tokens are single-use)
        _send(sock, sa.A_AUTH, sa.AUTH_SIGNATURE, 0,
              private.sign(token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1())))
        command, kind, _, token3 = _recv(sock)
        assert (command, kind) == (sa.A_AUTH, sa.AUTH_TOKEN)
        _send(sock, sa.A_AUTH, sa.AUTH_SIGNATURE, 0,
              private.sign(token3, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1())))
        command, *_ = _recv(sock)
        assert command == sa.A_CNXN
        assert not (tmp_path / "phone" / "data" / "local" / "tmp" / "pwned").exists()


def test_a_public_key_in_adb_format_round_trips(keys):
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(keys["mine"].read_bytes(), password=None)
    parsed = sa.parse_adb_public_key(Path(f"{keys['mine']}.pub").read_text())
    assert parsed.public_numbers() == private.public_key().public_numbers()
    for bad in ("", "not-base64!!", "QUJD user@host"):
        with pytest.raises(sa.AdbKeyError):
            sa.parse_adb_public_key(bad)


# ----------------------------------------------------------------------------------- the sandbox
def test_file_transfers_cannot_leave_the_root_through_a_symlink(tmp_path, keys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    with StandinAdbd(tmp_path / "phone", auth=True, authorized_keys=[Path(f"{keys['mine']}.pub")]) as dev:
        (dev.root / "data" / "local" / "tmp" / "escape").symlink_to(outside)
        t = _connect(dev, keys["mine"])
        assert not t.exists("/data/local/tmp/escape/secret.txt")
        with pytest.raises(FileNotFoundError):
            t.pull("/data/local/tmp/escape/secret.txt", tmp_path / "got.txt")
        with pytest.raises(DeviceError):
            t.push(Path(f"{keys['mine']}.pub"), "/data/local/tmp/escape/planted.txt")
        assert not (outside / "planted.txt").exists()
        t.push(Path(f"{keys['mine']}.pub"), "/data/local/tmp/inside.txt")     # inside the root still works
        assert (dev.root / "data" / "local" / "tmp" / "inside.txt").is_file()
        t.close()


def test_it_binds_to_loopback_only(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        StandinAdbd(tmp_path / "phone", host="0.0.0.0")


# ------------------------------------------------------------------------------------- the CLI
def _cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgevit_deploy.device_bench.testing.standin_adbd", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def test_the_command_line_warns_and_has_auth_on_by_default(tmp_path):
    out, _ = _cli("--help").communicate(timeout=60)
    assert "not a sandbox" in out and "THIS computer" in out and "--no-auth" in out
    proc = _cli(str(tmp_path / "phone"), env={"HOME": str(tmp_path / "home")})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no key is authorized" in err and "Traceback" not in err


def test_importing_the_standin_without_the_testing_extra_names_the_extra():
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "try:\n import edgevit_deploy.device_bench.testing.standin_adbd\n"
            "except ImportError as exc:\n print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "edgevit-deploy[testing]" in out


def _start_cli_server(tmp_path: Path, pub: Path) -> tuple[subprocess.Popen, int]:
    proc = _cli(str(tmp_path / "phone"), "--authorized-keys", str(pub))
    line = proc.stdout.readline()
    assert "listening on 127.0.0.1:" in line, line + proc.stderr.read()
    return proc, int(line.split("127.0.0.1:")[1].split()[0])


def test_a_direct_link_whose_adbd_is_killed_mid_command_is_noticed_at_once(tmp_path, keys):
    """kill -9 of the adbd (the kernel closes its socket) during a 60 s command: before, adb-shell read the
    EOF as "no data yet" and spun at 100 % CPU until the command's timeout."""
    proc, port = _start_cli_server(tmp_path, Path(f"{keys['mine']}.pub"))
    try:
        t = AdbShellTransport("127.0.0.1", port, key_path=keys["mine"], connect_timeout_s=5).connect()
        assert t.shell("echo up", timeout=30).stdout.strip() == "up"
        threading.Timer(1.0, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
        start = time.monotonic()
        cpu0 = time.process_time()
        with pytest.raises(DeviceDisconnectedError, match="closed the connection|connection lost"):
            t.shell("sleep 60; echo late", timeout=60)
        assert time.monotonic() - start < 10
        assert time.process_time() - cpu0 < 5
    finally:
        proc.kill()
        proc.wait()


def test_a_sweep_on_a_direct_link_whose_adbd_dies_marks_the_rows_failed_quickly(tmp_path, keys):
    from edgevit_deploy.device_bench.artifacts import ArtifactCache
    from edgevit_deploy.device_bench.store import ResultStore
    from edgevit_deploy.device_bench.sweep import Sweep
    from edgevit_deploy.device_bench.sweep_config import SweepSpec
    from edgevit_deploy.device_bench.transports import open_transport
    from edgevit_deploy.device_bench.types import Measurement

    proc, port = _start_cli_server(tmp_path, Path(f"{keys['mine']}.pub"))

    class SlowRunner:
        name = "slow"

        def run(self, transport, job, artifact):
            threading.Timer(1.0, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
            transport.shell("sleep 120", timeout=600)          # the runner's timeout: 600 s
            return Measurement(job=job, status="ok", median_ms=1.0)

    def exporter(req, out_dir):
        (out_dir / "m.torch.json").write_text("{}")
        return out_dir / "m.torch.json"

    device = f"adb:127.0.0.1:{port}"
    spec = SweepSpec(models=["edgevit_xxs"], targets=["onnx"], threads=[1, 2], devices=[device], img_size=64)
    try:
        with ResultStore(tmp_path / "s.sqlite") as store:
            sweep = Sweep(spec, store, ArtifactCache(tmp_path / "cache", exporter=exporter),
                          opener=lambda d: open_transport(d, key_path=keys["mine"], connect_timeout_s=2,
                                                          reconnect_attempts=1, reconnect_backoff_s=0.1),
                          runner_factory=lambda target, kind: SlowRunner(), reconnect_attempts=1,
                          reconnect_delay_s=0.1)
            start = time.monotonic()
            result = sweep.run()
            elapsed = time.monotonic() - start
            rows = store.rows()
    finally:
        proc.kill()
        proc.wait()
    assert elapsed < 20, elapsed
    assert result.ok == 0 and len(rows) == 2
    assert all(r["status"] == "failed" and "dropped" in r["reason"] for r in rows)
