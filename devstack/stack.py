"""Start, stop and describe the local emulator stack (Azurite, Cosmos DB server, Web PubSub).

Each emulator runs as a background process in its own session, with its log, pid and start
record in a state directory (``.devstack/`` at the repository root unless told otherwise), so that
``python -m devstack up`` in one shell and ``down`` in another, or a test fixture with its own
state directory, all find what they started. Starting is idempotent: a service already running
from the same state directory on the same ports is reused, and an emulator of the right kind
already answering on a port (started by someone else) is used but never stopped.

The Cosmos DB server speaks HTTPS with a certificate made for the state directory
(``devstack/certs.py``: ``cosmos-ca.pem``, ``cosmos-cert.pem``, ``cosmos-key.pem``, made once);
the settings carry ``COSMOS_CA_CERT`` (the CA file), with which the app's client verifies the
server instead of skipping verification for 127.0.0.1 (and warning on every request).

Two modes. **Key mode** (the default) gives the app connection strings and keys. **Identity
mode** (``identity=True``, ``python -m devstack up --identity``, or ``DEVSTACK_MODE=identity``)
runs the deployed, keyless configuration: the emulators with local auth off and HTTPS (Azurite
``--oauth basic``, the Cosmos DB server ``--auth aad``, the Web PubSub emulator ``--identity``,
all with the state directory's certificate), plus the managed-identity endpoint of
``devstack/identity.py``; the settings are the ones infra/app/api.bicep gives the Function App
(``AzureWebJobsStorage__blobServiceUri``, ``__queueServiceUri``, ``__credential``,
``__clientId``, ``AZURE_CLIENT_ID``, ``COSMOS_ENDPOINT``, ``WEBPUBSUB_ENDPOINT``: no key), the
CA files the SDKs verify the emulators with, and the two variables Azure Functions sets for a
managed identity, ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``. The identity's signing key and
header secret are made once per state directory (``identity-secrets.json``).
``record_auth=True`` has every emulator log each request's Authorization header (``*-auth.log``,
Azurite's debug log), for tests. Run the two modes from different state directories and ports.

Ports come from the environment (defaults in brackets): ``AZURITE_BLOB_PORT`` [10000],
``AZURITE_QUEUE_PORT`` [10001], ``AZURITE_TABLE_PORT`` [10002], ``COSMOS_PORT`` [8081],
``WEBPUBSUB_PORT`` [7080], ``IDENTITY_PORT`` [7090]. Also ``DEVSTACK_DIR`` (state directory),
``WEBPUBSUB_ACCESS_KEY``, ``DEVSTACK_START_TIMEOUT`` (seconds, default 15) and
``DEVSTACK_VERBOSE=1`` (Azurite access log).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from devstack.certs import DevCertificate, ensure_certificate, served_by
from devstack.identity import DEV_CLIENT_ID, MSI_PATH, DevTokenIssuer

try:  # POSIX only; without it concurrent `up` calls are simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".devstack"
HOST = "127.0.0.1"
SERVICES = ("azurite", "cosmos", "webpubsub", "identity")
# The managed-identity endpoint only exists in identity mode.
KEY_MODE_SERVICES = ("azurite", "cosmos", "webpubsub")

# Well-known, public development credentials (not secrets).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
COSMOS_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
DEFAULT_WEBPUBSUB_ACCESS_KEY = "ZGV2c3RhY2std2VicHVic3ViLWxvY2FsLWFjY2Vzcy1rZXktMDA="

_PORT_ENV = {
    "blob": "AZURITE_BLOB_PORT",
    "queue": "AZURITE_QUEUE_PORT",
    "table": "AZURITE_TABLE_PORT",
    "cosmos": "COSMOS_PORT",
    "webpubsub": "WEBPUBSUB_PORT",
    "identity": "IDENTITY_PORT",
}
_STOP_GRACE = 5.0


class StackError(RuntimeError):
    """An emulator could not be started (the message says which, why, and shows its log)."""


@dataclass(frozen=True)
class Ports:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    cosmos: int = 8081
    webpubsub: int = 7080
    identity: int = 7090

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ports:
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = env.get(_PORT_ENV[f.name], "").strip()
            if raw:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise StackError(f"{_PORT_ENV[f.name]}={raw!r} is not a port number") from None
        return cls(**values)


@dataclass
class ServiceState:
    name: str
    # started (by this call) | reused (ours, already running) | external (someone else's,
    # never stopped by us) | skipped (not available) | running | stopped (for `status`)
    status: str
    ports: tuple[int, ...]
    pid: int | None = None
    log: Path | None = None
    detail: str = ""


@dataclass
class StackInfo:
    ports: Ports
    settings: dict[str, str]
    state_dir: Path
    services: dict[str, ServiceState] = field(default_factory=dict)
    identity: bool = False

    @property
    def issuer(self) -> DevTokenIssuer:
        """The development token issuer of identity mode (whose tokens the emulators accept)."""
        return DevTokenIssuer(signing_key=identity_secrets(self.state_dir)["signing_key"])

    @property
    def started(self) -> list[str]:
        """The services this call started (and so should stop)."""
        return [n for n, s in self.services.items() if s.status == "started"]

    def stop(self) -> list[str]:
        """Stop only what this call started."""
        return stop_stack(self.state_dir, services=self.started)


def webpubsub_access_key() -> str:
    return os.environ.get("WEBPUBSUB_ACCESS_KEY") or DEFAULT_WEBPUBSUB_ACCESS_KEY


def identity_mode_from_env() -> bool:
    return os.environ.get("DEVSTACK_MODE", "").strip().lower() == "identity"


def identity_secrets(state_dir: Path) -> dict[str, str]:
    """The managed-identity endpoint's header secret and the issuer's signing key, made once per
    state directory (development values, never an account key)."""
    path = state_dir / "identity-secrets.json"
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(path.read_text())
        if isinstance(found, dict) and {"header", "signing_key"} <= set(found):
            return {k: str(found[k]) for k in ("header", "signing_key")}
    made = {"header": secrets.token_urlsafe(24), "signing_key": secrets.token_urlsafe(32)}
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(made, out)
    return made


def settings_for(
    ports: Ports,
    access_key: str | None = None,
    state_dir: Path | str | None = None,
    *,
    identity: bool = False,
) -> dict[str, str]:
    """The app settings that point the SDKs at the emulators on ``ports``.

    ``COSMOS_CA_CERT`` is the CA file of ``state_dir`` (default: ``DEVSTACK_DIR`` or
    ``.devstack/``), which exists once the stack has been started from there. In identity mode:
    the keyless settings of infra/app/api.bicep, the CA files and the managed identity's
    ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``."""
    key = access_key or webpubsub_access_key()
    state = _state_dir(state_dir).resolve()
    ca = DevCertificate.in_dir(state).ca
    if identity:
        return {
            "AzureWebJobsStorage__blobServiceUri": (
                f"https://{HOST}:{ports.blob}/{AZURITE_ACCOUNT}"
            ),
            "AzureWebJobsStorage__queueServiceUri": (
                f"https://{HOST}:{ports.queue}/{AZURITE_ACCOUNT}"
            ),
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": DEV_CLIENT_ID,
            "AZURE_CLIENT_ID": DEV_CLIENT_ID,
            "COSMOS_ENDPOINT": f"https://{HOST}:{ports.cosmos}",
            "WEBPUBSUB_ENDPOINT": f"https://{HOST}:{ports.webpubsub}",
            "COSMOS_CA_CERT": str(ca),
            "STORAGE_CA_CERT": str(ca),
            "WEBPUBSUB_CA_CERT": str(ca),
            "IDENTITY_ENDPOINT": f"http://{HOST}:{ports.identity}{MSI_PATH}",
            "IDENTITY_HEADER": identity_secrets(state)["header"],
        }
    storage = (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{HOST}:{ports.blob}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{HOST}:{ports.queue}/{AZURITE_ACCOUNT};"
        f"TableEndpoint=http://{HOST}:{ports.table}/{AZURITE_ACCOUNT};"
    )
    return {
        "AzureWebJobsStorage": storage,
        "COSMOS_ENDPOINT": f"https://{HOST}:{ports.cosmos}",
        "COSMOS_KEY": COSMOS_KEY,
        "COSMOS_CA_CERT": str(ca),
        "WEBPUBSUB_CONNECTION_STRING": (
            f"Endpoint=http://{HOST}:{ports.webpubsub};AccessKey={key};Version=1.0;"
        ),
    }


# --------------------------------------------------------------------------------- probes


def _port_open(port: int, timeout: float = 0.5) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


def _request(
    port: int, path: str, *, tls: bool = False, timeout: float = 1.0
) -> tuple[int, dict[str, str], bytes] | None:
    conn: http.client.HTTPConnection
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _azurite_probe(port: int, kind: str, tls: bool = False) -> Callable[[], bool]:
    def probe() -> bool:
        answer = _request(port, "/", tls=tls)
        return answer is not None and answer[1].get("server", "").startswith(f"Azurite-{kind}")

    return probe


def _cosmos_probe(port: int) -> Callable[[], bool]:
    # Is a Cosmos DB server answering? Whose certificate it has is checked apart (`_cosmos_tls`).
    def probe() -> bool:
        answer = _request(port, "/", tls=True)
        if answer is None:
            return False
        status, _headers, body = answer
        if status == 401:  # a real Cosmos DB emulator wants auth even for the account read
            return True
        try:
            return status == 200 and "writableLocations" in json.loads(body)
        except ValueError:
            return False

    return probe


def _health_probe(port: int, tls: bool = False) -> Callable[[], bool]:
    def probe() -> bool:
        answer = _request(port, "/health", tls=tls)
        return answer is not None and answer[0] == 200

    return probe


# ------------------------------------------------------------------------------- services


@dataclass(frozen=True)
class _Service:
    name: str
    argv: list[str]
    ports: tuple[int, ...]
    probes: tuple[Callable[[], bool], ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    skip_reason: str = ""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise StackError(
            "Node.js (`node`) is not on PATH; the Azurite and Cosmos emulators need it"
        )
    return node


def _webpubsub_missing() -> str:
    try:
        found = importlib.util.find_spec("devstack.webpubsub_emulator") is not None
    except ImportError:
        found = False
    if found:
        return ""
    return "module devstack.webpubsub_emulator not found; Web PubSub emulator skipped"


def _services(
    ports: Ports,
    state_dir: Path,
    access_key: str,
    node: str = "node",
    *,
    identity: bool = False,
    record_auth: bool = False,
) -> dict[str, _Service]:
    node_bin = ROOT / "node_modules" / ".bin"
    tls = DevCertificate.in_dir(state_dir)
    quiet = [] if os.environ.get("DEVSTACK_VERBOSE") else ["--silent"]
    azurite = [
        node,
        str(node_bin / "azurite"),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        *quiet,
    ]
    cosmos_extra: list[str] = []
    webpubsub_extra = ["--access-key", access_key]
    if identity:
        # Bearer tokens only travel over HTTPS (the SDKs refuse otherwise, Azurite too).
        azurite += ["--oauth", "basic", "--cert", str(tls.cert), "--key", str(tls.key)]
        cosmos_extra = ["--auth", "aad"]
        webpubsub_extra = [
            "--identity",
            "--access-key",
            access_key,
            "--cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
        ]
    if record_auth:
        # Azurite's debug log holds every request's headers (RequestHeaders:{...}).
        azurite += ["--debug", str(state_dir / "azurite-debug.log")]
        cosmos_extra += ["--auth-log", str(state_dir / "cosmos-auth.log")]
        webpubsub_extra += ["--auth-log", str(state_dir / "webpubsub-auth.log")]
    secrets_ = identity_secrets(state_dir) if identity else {}
    for kind in ("blob", "queue", "table"):
        azurite += [
            f"--{kind}Host",
            HOST,
            f"--{kind}Port",
            str(getattr(ports, kind)),
            f"--{kind}KeepAliveTimeout",
            "120",
        ]
    return {
        "azurite": _Service(
            name="azurite",
            argv=azurite,
            ports=(ports.blob, ports.queue, ports.table),
            probes=(
                _azurite_probe(ports.blob, "Blob", identity),
                _azurite_probe(ports.queue, "Queue", identity),
                _azurite_probe(ports.table, "Table", identity),
            ),
            cwd=state_dir,
        ),
        "cosmos": _Service(
            name="cosmos",
            argv=[
                node,
                str(ROOT / "devstack" / "cosmos_server.js"),
                "--host",
                HOST,
                "--port",
                str(ports.cosmos),
                "--cert",
                str(tls.cert),
                "--key",
                str(tls.key),
                *cosmos_extra,
            ],
            ports=(ports.cosmos,),
            probes=(_cosmos_probe(ports.cosmos),),
            cwd=state_dir,
        ),
        "webpubsub": _Service(
            name="webpubsub",
            argv=[
                sys.executable,
                "-m",
                "devstack.webpubsub_emulator",
                "--host",
                HOST,
                "--port",
                str(ports.webpubsub),
                *webpubsub_extra,
            ],
            ports=(ports.webpubsub,),
            probes=(_health_probe(ports.webpubsub, identity),),
            cwd=ROOT,
            env={"PYTHONUNBUFFERED": "1"},
            skip_reason=_webpubsub_missing(),
        ),
        "identity": _Service(
            name="identity",
            argv=[
                sys.executable,
                "-m",
                "devstack.identity",
                "--host",
                HOST,
                "--port",
                str(ports.identity),
                "--client-id",
                DEV_CLIENT_ID,
            ],
            ports=(ports.identity,),
            probes=(_health_probe(ports.identity),),
            cwd=ROOT,
            # The secrets go by environment, not argv (which `ps` shows to every user).
            env={
                "PYTHONUNBUFFERED": "1",
                "DEVSTACK_IDENTITY_HEADER": secrets_.get("header", ""),
                "DEVSTACK_IDENTITY_KEY": secrets_.get("signing_key", ""),
            },
            skip_reason="" if identity else "identity mode only",
        ),
    }


def _ensure_node_packages() -> None:
    """Fill the gap on a fresh checkout: `npm ci` when the pinned emulators are not installed."""
    modules = ROOT / "node_modules"
    needed = [modules / ".bin" / "azurite", modules / "@vercel" / "cosmosdb-server" / "lib"]
    if all(p.exists() for p in needed):
        return
    npm = shutil.which("npm")
    if npm is None or not (ROOT / "package-lock.json").exists():
        raise StackError(
            "the npm emulators are not installed (node_modules/ is missing) and npm is not "
            "available; run `bash scripts/bootstrap.sh`"
        )
    print("devstack: installing the pinned npm emulators (npm ci) ...", file=sys.stderr)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise StackError(f"`npm ci` failed:\n{done.stdout}{done.stderr}")


# ------------------------------------------------------------------------ process records

_children: dict[int, subprocess.Popen[bytes]] = {}


def _record_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.json"


def _read_record(state_dir: Path, name: str) -> dict[str, object] | None:
    try:
        data = json.loads(_record_path(state_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _record_ports(record: Mapping[str, object]) -> tuple[int, ...]:
    ports = record.get("ports")
    return tuple(int(p) for p in ports) if isinstance(ports, list) else ()


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), or None when unknown; "" for a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2 :].split()  # fields after "pid (comm) "
    return "" if rest[0] in ("Z", "X") else rest[19]


def _alive(record: Mapping[str, object]) -> bool:
    pid = record["pid"]
    assert isinstance(pid, int)
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = record.get("proc_start")
    if started and Path("/proc/self/stat").exists():  # guard against a recycled pid and zombies
        return _proc_start(pid) == started
    return True


def _log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(log is empty)"


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _die_with_caller() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGTERM the child when the calling thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the caller died before prctl took effect
            os._exit(1)

    return preexec


def _launch(svc: _Service, state_dir: Path, *, bind_to_caller: bool = False) -> ServiceState:
    log = state_dir / f"{svc.name}.log"
    env = {**os.environ, **svc.env}
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(
                svc.argv,
                cwd=svc.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: survives the shell, killed as one
                preexec_fn=_die_with_caller() if bind_to_caller else None,
            )
        except OSError as exc:
            raise StackError(f"{svc.name}: cannot run {svc.argv[0]}: {exc}") from exc
    _children[proc.pid] = proc
    record = {
        "pid": proc.pid,
        "proc_start": _proc_start(proc.pid),
        "argv": svc.argv,
        "ports": list(svc.ports),
        "log": str(log),
        "started_at": time.time(),
    }
    (state_dir / f"{svc.name}.pid").write_text(f"{proc.pid}\n")
    _record_path(state_dir, svc.name).write_text(json.dumps(record, indent=2) + "\n")
    return ServiceState(svc.name, "started", svc.ports, pid=proc.pid, log=log)


def _wait_ready(
    pending: dict[str, tuple[_Service, ServiceState]], deadline: float
) -> dict[str, str]:
    """Wait for every pending service to answer; returns {name: failure} for those that did not."""
    failures: dict[str, str] = {}
    todo = dict(pending)
    while todo:
        for name, (svc, state) in list(todo.items()):
            if all(probe() for probe in svc.probes):
                del todo[name]
                continue
            child = _children.get(state.pid or -1)
            if child is not None and child.poll() is not None:
                failures[name] = f"exited with code {child.returncode}"
                del todo[name]
        if todo and time.monotonic() > deadline:
            failures.update((name, "did not answer in time") for name in todo)
            break
        if todo:
            time.sleep(0.05)
    return failures


# ------------------------------------------------------------------------------ the API


def _state_dir(state_dir: Path | str | None) -> Path:
    if state_dir is not None:
        return Path(state_dir)
    return Path(os.environ.get("DEVSTACK_DIR") or DEFAULT_STATE_DIR)


def start_stack(
    ports: Ports | None = None,
    *,
    state_dir: Path | str | None = None,
    services: Iterable[str] | None = None,
    timeout: float | None = None,
    bind_to_caller: bool = False,
    identity: bool | None = None,
    record_auth: bool = False,
) -> StackInfo:
    """Start the emulators (or reuse running ones) and wait until each answers.

    ``ports`` defaults to :meth:`Ports.from_env`. ``services`` selects a subset of
    ``azurite``, ``cosmos``, ``webpubsub`` (and ``identity``). ``identity`` (default:
    ``DEVSTACK_MODE``) starts identity mode, ``record_auth`` the Authorization logs (module
    docstring). ``bind_to_caller`` (for test fixtures; Linux) makes
    the kernel stop the emulators started here when the calling thread ends, even if it is
    killed before it can call :func:`stop_stack`. Raises :class:`StackError` (after stopping
    whatever this call started) when one cannot be started.
    """
    ports = ports or Ports.from_env()
    state = _state_dir(state_dir).resolve()
    if identity is None:
        identity = identity_mode_from_env()
    everything = SERVICES if identity else KEY_MODE_SERVICES
    wanted = list(services) if services is not None else list(everything)
    unknown = sorted(set(wanted) - set(SERVICES))
    if unknown:
        raise StackError(f"unknown service(s) {unknown}; known: {list(SERVICES)}")
    if timeout is None:
        timeout = float(os.environ.get("DEVSTACK_START_TIMEOUT") or 15)
    key = webpubsub_access_key()
    if identity:
        identity_secrets(state)  # made before any service reads them
    info = StackInfo(
        ports=ports,
        settings=settings_for(ports, key, state, identity=identity),
        state_dir=state,
        identity=identity,
    )

    with _locked(state):
        node = "node"
        if any(n in wanted for n in ("azurite", "cosmos")):
            _ensure_node_packages()
            node = _node()
        if "cosmos" in wanted or identity:
            ensure_certificate(state)
        specs = _services(ports, state, key, node, identity=identity, record_auth=record_auth)
        pending: dict[str, tuple[_Service, ServiceState]] = {}
        try:
            for name in wanted:
                svc = specs[name]
                if svc.skip_reason:
                    info.services[name] = ServiceState(
                        name, "skipped", svc.ports, detail=svc.skip_reason
                    )
                    continue
                result = _adopt(svc, state, timeout)
                if name == "cosmos" and result is not None:
                    result = _cosmos_tls(result, info, timeout)
                if result is None:
                    result = _launch(svc, state, bind_to_caller=bind_to_caller)
                    pending[name] = (svc, result)
                info.services[name] = result
            failures = _wait_ready(pending, time.monotonic() + timeout)
        except BaseException:
            _stop_names(state, list(pending))
            raise
        if failures:
            _stop_names(state, list(pending))
            report = "\n\n".join(
                f"{name} ({' '.join(pending[name][0].argv)}) {why}; "
                f"log {pending[name][1].log}:\n{_log_tail(pending[name][1].log)}"
                for name, why in failures.items()
            )
            raise StackError(f"the emulator stack did not start:\n{report}")
    return info


def _adopt(svc: _Service, state_dir: Path, timeout: float) -> ServiceState | None:
    """Reuse a running instance of ``svc`` if there is one; None when it must be started."""
    record = _read_record(state_dir, svc.name)
    if record is not None:
        if _alive(record):
            recorded = record.get("argv")
            if recorded != svc.argv:
                shown = " ".join(str(a) for a in recorded) if isinstance(recorded, list) else ""
                raise StackError(
                    f"{svc.name} is already running from {state_dir} with other options "
                    f"(pid {record['pid']}: {shown}); "
                    "run `python -m devstack down` first (or use another DEVSTACK_DIR)"
                )
            if _record_ports(record) != svc.ports:
                raise StackError(
                    f"{svc.name} is already running from {state_dir} on ports "
                    f"{record.get('ports')} (pid {record['pid']}), not {list(svc.ports)}; "
                    "run `python -m devstack down` first"
                )
            deadline = time.monotonic() + timeout  # it may still be starting
            while not all(p() for p in svc.probes):
                if time.monotonic() > deadline or not _alive(record):
                    raise StackError(
                        f"{svc.name} (pid {record['pid']}) is running but does not answer on "
                        f"{list(svc.ports)}; log:\n{_log_tail(Path(str(record.get('log'))))}"
                    )
                time.sleep(0.05)
            pid = record["pid"]
            assert isinstance(pid, int)
            return ServiceState(
                svc.name, "reused", svc.ports, pid=pid, log=Path(str(record.get("log")))
            )
        _forget(state_dir, svc.name)
    busy = [p for p in svc.ports if _port_open(p)]
    if busy:
        if all(p() for p in svc.probes):
            return ServiceState(
                svc.name, "external", svc.ports, detail="already answering; not started by us"
            )
        raise StackError(
            f"{svc.name}: port(s) {busy} already in use by another program; "
            f"free them or choose other ports ({', '.join(_env_names(svc.name))})"
        )
    return None


def _cosmos_tls(running: ServiceState, info: StackInfo, timeout: float) -> ServiceState | None:
    """Check the certificate of a Cosmos DB server found running (None: start a new one).

    Ours (reused) must serve the state directory's certificate: one started before it was made
    (or renewed) is restarted. Someone else's (external) is used as it is; when its certificate
    is not ours, ``COSMOS_CA_CERT`` is left out of the settings (the SDK then skips verification
    for 127.0.0.1, as it does without the setting)."""
    ca = DevCertificate.in_dir(info.state_dir).ca
    deadline = time.monotonic() + timeout
    verified = served_by(HOST, info.ports.cosmos, ca)
    while verified is None and time.monotonic() < deadline:  # answered the probe a moment ago
        time.sleep(0.05)
        verified = served_by(HOST, info.ports.cosmos, ca)
    if verified:
        return running
    if running.status == "reused":
        _stop_one(info.state_dir, running.name)
        return None
    info.settings.pop("COSMOS_CA_CERT", None)
    running.detail += f"; its certificate is not from {ca}, so COSMOS_CA_CERT is not set"
    return running


def _env_names(name: str) -> list[str]:
    keys = {"azurite": ("blob", "queue", "table"), "cosmos": ("cosmos",)}.get(name, (name,))
    return [_PORT_ENV[k] for k in keys]


def _forget(state_dir: Path, name: str) -> None:
    for suffix in (".json", ".pid"):
        with contextlib.suppress(OSError):
            (state_dir / f"{name}{suffix}").unlink()


def _stop_one(state_dir: Path, name: str) -> bool:
    record = _read_record(state_dir, name)
    if record is None:
        return False
    pid = record["pid"]
    assert isinstance(pid, int)
    stopped = False
    if _alive(record):
        stopped = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + (_STOP_GRACE if sig == signal.SIGTERM else 2.0)
            while _alive(record) and time.monotonic() < deadline:
                child = _children.get(pid)
                if child is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(timeout=0.05)
                else:
                    time.sleep(0.05)
            if not _alive(record):
                break
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    _forget(state_dir, name)
    return stopped


def _stop_names(state_dir: Path, names: Iterable[str]) -> list[str]:
    return [n for n in names if _stop_one(state_dir, n)]


def stop_stack(
    state_dir: Path | str | None = None, *, services: Iterable[str] | None = None
) -> list[str]:
    """Stop the emulators started from ``state_dir`` (all of them, or only ``services``).

    Returns the names of the services that were running and are now stopped.
    """
    state = _state_dir(state_dir).resolve()
    if not state.exists():
        return []
    with _locked(state):
        return _stop_names(state, list(services) if services is not None else list(SERVICES))


def stack_status(
    ports: Ports | None = None, *, state_dir: Path | str | None = None
) -> dict[str, ServiceState]:
    """What runs from ``state_dir`` (with its recorded ports), or answers on ``ports``."""
    ports = ports or Ports.from_env()
    state = _state_dir(state_dir).resolve()
    specs = _services(ports, state, webpubsub_access_key(), identity=identity_mode_from_env())
    result: dict[str, ServiceState] = {}
    for name, svc in specs.items():
        record = _read_record(state, name)
        if record is not None and _alive(record):
            pid = record["pid"]
            assert isinstance(pid, int)
            result[name] = ServiceState(
                name, "running", _record_ports(record), pid=pid, log=Path(str(record.get("log")))
            )
        elif all(p() for p in svc.probes):
            result[name] = ServiceState(name, "external", svc.ports, detail="not started by us")
        elif svc.skip_reason:
            result[name] = ServiceState(name, "skipped", svc.ports, detail=svc.skip_reason)
        else:
            result[name] = ServiceState(name, "stopped", svc.ports)
    return result
