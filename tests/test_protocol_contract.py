"""The contract between genserve and the uvicorn internals it is built on: app/http/protocol.py's
GuardedProtocol, and app/supervisor.py's Supervisor.

GuardedProtocol subclasses uvicorn's private `HttpToolsProtocol`: it overrides its methods (and
`data_received` is a copy of uvicorn's, with additions), calls its helpers, and reads the
attributes uvicorn's `__init__` and `connection_made` set. Supervisor subclasses uvicorn's
private `Multiprocess` (the supervisor of several workers): it replaces its health check, and
talks to each worker over the pipe of uvicorn's `Process`. None of that is uvicorn's public API,
so any release may change it. These tests fail first when it does, before a live server
misbehaves; they start no server and take well under a second.

Moving to a new uvicorn:
1. install it and run this file: each failure says what changed;
2. read the diff of uvicorn/protocols/http/httptools_impl.py and uvicorn/supervisors/multiprocess.py
   between the two releases (e.g. `pip download --no-deps uvicorn==OLD` and `==NEW`, unpack both,
   diff), and adapt app/http/protocol.py and app/supervisor.py to it;
3. `python -m tests.test_protocol_contract` prints the new UVICORN_SOURCE_SHA256 and
   SUPERVISOR_SOURCE_SHA256 tables (and the signatures): paste them here once reviewed, and set
   REVIEWED_UVICORN;
4. widen the pin in pyproject.toml, then run the live tests of the protocol and the supervisor too
   (tests/test_hostile.py, tests/test_coalescing.py, tests/test_shutdown.py,
   tests/test_hostile_workers.py, tests/test_reload.py).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import sys
import textwrap
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess, Process

import app.http.protocol
from app.http.protocol import CoalescingTransport, GuardedProtocol
from app.supervisor import Supervisor, WorkerHealth, worker_problem

ROOT = Path(__file__).resolve().parent.parent
REVIEWED_UVICORN = "0.55.0"  # the release whose sources the table below was reviewed against
HOW = "see tests/test_protocol_contract.py's docstring for how to review a new uvicorn"

# HttpToolsProtocol's methods that GuardedProtocol overrides (each calls uvicorn's through super(),
# except data_received, which replaces it with a copy).
OVERRIDDEN = (
    "__init__",
    "connection_made",
    "connection_lost",
    "shutdown",
    "data_received",
    "on_message_begin",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
)
# HttpToolsProtocol's methods that GuardedProtocol calls (or schedules) on self without overriding them.
CALLED = (
    "_unset_keepalive_if_required",
    "send_400_response",
    "_should_upgrade",
    "handle_websocket_upgrade",
    "_unsupported_upgrade_warning",
    "timeout_keep_alive_handler",
)
# Instance attributes of uvicorn's that GuardedProtocol reads or writes on self (set by uvicorn's
# __init__ or connection_made; `cycle` is reassigned per request by on_headers_complete).
UVICORN_ATTRIBUTES = (
    "client",
    "connections",
    "cycle",
    "flow",
    "logger",
    "loop",
    "parser",
    "pipeline",
    "server_state",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
    "transport",
)
# Parameter names of each, in uvicorn REVIEWED_UVICORN.
UVICORN_SIGNATURES = {
    "__init__": ("self", "config", "server_state", "app_state", "_loop"),
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "shutdown": ("self",),
    "data_received": ("self", "data"),
    "on_message_begin": ("self",),
    "on_header": ("self", "name", "value"),
    "on_headers_complete": ("self",),
    "on_body": ("self", "body"),
    "on_message_complete": ("self",),
    "on_response_complete": ("self",),
    "_unset_keepalive_if_required": ("self",),
    "send_400_response": ("self", "msg"),
    "_should_upgrade": ("self",),
    "handle_websocket_upgrade": ("self",),
    "_unsupported_upgrade_warning": ("self",),
    "timeout_keep_alive_handler": ("self",),
}
# sha256 of each method's source (inspect.getsource, dedented) in uvicorn REVIEWED_UVICORN. Refresh
# only after reading the diff and adapting app/http/protocol.py: `python -m tests.test_protocol_contract`.
UVICORN_SOURCE_SHA256 = {
    "__init__": "264f2f06759670d42930457f7a696640a575fad06bdb0933901b2932347f800c",
    "connection_made": "ba1915817ccf6c1b7d6d9982ca74b6fb9e43eebbd3f588fff1e1f8f17af5e161",
    "connection_lost": "21bb5222b35990e710aa5c2e96639fb2fa39cae9019c44faec436dc5e004f88c",
    "shutdown": "4822ef10fa982b12d6d23263c59bc6ccee423726d85f812ada2e122193f2aa81",
    "data_received": "02c2572f1df559070eba7f206a3f7e251782f5af4aaae194fc1ffb67f24c3873",
    "on_message_begin": "0efab6f9456c4987cb366d90c1d3f4a36f28a271cf9b5b2d276c631d387e55ea",
    "on_header": "5fecb4905c7f12d71674eebc1533b1f5f2b84af626f36bf6e80e5120d0f3d90e",
    "on_headers_complete": "7e259152e5aade71beacb5d1b28c319358b2b0e1f3a493655b5c354b5e7d4ef9",
    "on_body": "415b4cef19fba083055fe4466dd259ce6abac6d194caf566ad9e7be0c639ca21",
    "on_message_complete": "377f9122ee6f3ab87995f6baba01667ec1e2b22543a8e09e83aa334973018f10",
    "on_response_complete": "5684fd801d0683ac20b9144e8eed8327e445236d5c1d16a02253dfb3a35b9a75",
    "_unset_keepalive_if_required": "58f4ffce604d92dde3e339f2e7b400f8d8e12e790fd6802ca7b83249682fa6f4",
    "send_400_response": "0b0d3ace8d2637888e890086561ad9c33f34dd9d90d20835484b2a292006236c",
    "_should_upgrade": "ae8ade68aa39944a56a9a96da81af82f8f0953c25a13013f4e6416014751832f",
    "handle_websocket_upgrade": "9eedd6b3bd8e57806eee31a3111bcde0925e536de29488f5fecf16476a4777ff",
    "_unsupported_upgrade_warning": "a5d94889e343914ec70e03d3a7b1d49cf8a6e9cd93c914d87cc34c9bc943170e",
    "timeout_keep_alive_handler": "2127de00e7f6b11823cf2987a8859de912df614f2f704145e532a6e02d931e62",
}


def source_sha256(function) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()


def differing(found: dict[str, str], reviewed: dict[str, str]) -> str:
    """The names whose source hash is not the reviewed one."""
    return ", ".join(sorted(name for name in found if found[name] != reviewed.get(name)))


def uvicorn_source_sha256() -> dict[str, str]:
    return {name: source_sha256(getattr(HttpToolsProtocol, name)) for name in (*OVERRIDDEN, *CALLED)}


def parameters(function) -> list[tuple[str, object, object]]:
    """Name, kind and default of each parameter (annotations left out: both modules postpone them)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def names_used_on_self() -> tuple[set[str], set[str]]:
    """Every `self.<name>` in GuardedProtocol's source, and those its own __init__ assigns."""
    tree = ast.parse(inspect.getsource(app.http.protocol))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GuardedProtocol")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")

    def on_self(node) -> set[str]:
        return {
            a.attr
            for a in ast.walk(node)
            if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name) and a.value.id == "self"
        }

    assigned = {
        a.attr
        for a in ast.walk(init)
        if isinstance(a, ast.Attribute) and isinstance(a.ctx, ast.Store) and getattr(a.value, "id", None) == "self"
    }
    return on_self(cls), assigned


class FakeTransport:
    """What uvicorn's protocol and CoalescingTransport use of an asyncio socket transport."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True
        self.buffered = 0  # bytes written but not yet sent, as a test sets it

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)


async def asgi_app(scope, receive, send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def loaded_config(app=asgi_app) -> Config:
    """The way app/__main__.py passes the protocol to uvicorn.run."""
    config = Config(app=app, http="app.http.protocol:GuardedProtocol", lifespan="off", log_config=None)
    config.load()
    return config


def open_connection(config: Config, state: ServerState, protocol_class=None):
    """A protocol made and connected as uvicorn's Server.startup does (inside the running loop)."""
    protocol = (protocol_class or config.http_protocol_class)(
        config=config, server_state=state, app_state={}, _loop=None
    )
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# ---- the pin ------------------------------------------------------------------------------------


def test_installed_uvicorn_is_within_the_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lists = {"dependencies": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    pins = {where: Requirement(r) for where, reqs in lists.items() for r in reqs if Requirement(r).name == "uvicorn"}
    assert "serve" in pins, "pyproject.toml's serve extra no longer names uvicorn: GuardedProtocol needs it"
    installed = Version(version("uvicorn"))
    for where, requirement in pins.items():
        assert installed in requirement.specifier, (
            f"uvicorn {installed} is installed, outside pyproject.toml's pin ({where}: {requirement}): install "
            f"one within it, or review {installed} against GuardedProtocol before moving the pin; {HOW}"
        )
        next_minor = Version(f"{installed.major}.{installed.minor + 1}")
        assert next_minor not in requirement.specifier, (
            f"pyproject.toml ({where}) allows uvicorn {next_minor} ({requirement}), which this contract has "
            f"not seen: pin below it (`<{next_minor}`) until the new release passes this file"
        )
    assert "standard" in pins["serve"].extras, "uvicorn without [standard] has no httptools: GuardedProtocol needs it"


# ---- what GuardedProtocol takes from HttpToolsProtocol ---------------------------------------------


def test_overrides_are_the_reviewed_ones() -> None:
    overrides = {
        name
        for name, value in vars(GuardedProtocol).items()
        if callable(value) and hasattr(HttpToolsProtocol, name) and name not in vars(object)
    } | ({"__init__"} if "__init__" in vars(GuardedProtocol) else set())
    added, gone = ", ".join(sorted(overrides - set(OVERRIDDEN))), ", ".join(sorted(set(OVERRIDDEN) - overrides))
    assert not added, (
        f"GuardedProtocol now overrides HttpToolsProtocol's {added}: either uvicorn added a method "
        f"of that name (rename GuardedProtocol's), or app/http/protocol.py overrides more: then review uvicorn's "
        f"and add it to OVERRIDDEN, UVICORN_SIGNATURES and UVICORN_SOURCE_SHA256"
    )
    assert not gone, (
        f"GuardedProtocol no longer overrides {gone}: "
        "remove it from OVERRIDDEN, UVICORN_SIGNATURES and UVICORN_SOURCE_SHA256"
    )


def test_uvicorn_has_each_method_with_the_reviewed_signature() -> None:
    assert set(UVICORN_SIGNATURES) == {*OVERRIDDEN, *CALLED}, "UVICORN_SIGNATURES must list OVERRIDDEN and CALLED"
    for name, expected in UVICORN_SIGNATURES.items():
        assert callable(getattr(HttpToolsProtocol, name, None)), (
            f"uvicorn {version('uvicorn')} has no HttpToolsProtocol.{name}, which GuardedProtocol "
            f"{'overrides' if name in OVERRIDDEN else 'calls'}: {HOW}"
        )
        found = tuple(p.name for p in inspect.signature(getattr(HttpToolsProtocol, name)).parameters.values())
        assert found == expected, (
            f"uvicorn {version('uvicorn')} changed HttpToolsProtocol.{name}'s parameters from {expected} to "
            f"{found}: adapt GuardedProtocol's use of it, then UVICORN_SIGNATURES; {HOW}"
        )
    for name in OVERRIDDEN:
        if name == "__init__":  # GuardedProtocol's takes *args, **kwargs and passes them on
            continue
        assert parameters(getattr(GuardedProtocol, name)) == parameters(getattr(HttpToolsProtocol, name)), (
            f"GuardedProtocol.{name}'s parameters differ from HttpToolsProtocol.{name}'s "
            f"({inspect.signature(getattr(HttpToolsProtocol, name))}): uvicorn and httptools call it that way"
        )


def assert_reviewed(current: dict[str, str], reviewed: dict[str, str], whose: str, why: str, table: str) -> None:
    """The sources hashed in `current` are those reviewed; otherwise say what to read, adapt and refresh."""
    changed = differing(current, reviewed)
    assert not changed, (
        f"the source of {whose} {changed} in uvicorn {version('uvicorn')} differs from the one reviewed in "
        f"uvicorn {REVIEWED_UVICORN} ({why}). Read the diff and adapt, then refresh {table} with "
        f"`python -m tests.test_protocol_contract`; {HOW}"
    )


def test_uvicorn_sources_are_the_reviewed_ones() -> None:
    why = "GuardedProtocol overrides or calls each; its data_received is a copy of uvicorn's: app/http/protocol.py"
    assert_reviewed(uvicorn_source_sha256(), UVICORN_SOURCE_SHA256, "HttpToolsProtocol's", why, "UVICORN_SOURCE_SHA256")


def test_names_used_on_self_are_listed() -> None:
    """Every `self.<name>` in GuardedProtocol that it does not define itself is listed above (so it is checked)."""
    used, assigned_in_init = names_used_on_self()
    own = set(vars(GuardedProtocol)) | assigned_in_init
    from_uvicorn = used - own
    listed = set(UVICORN_ATTRIBUTES) | set(CALLED)
    unlisted = ", ".join(f"self.{name}" for name in sorted(from_uvicorn - listed))
    assert not unlisted, (
        f"GuardedProtocol now uses {unlisted} from uvicorn: check that uvicorn sets it, and add it to "
        "UVICORN_ATTRIBUTES (an attribute) or CALLED (a method: with its signature and hash)"
    )
    assert listed <= from_uvicorn, f"GuardedProtocol no longer uses {sorted(listed - from_uvicorn)}: unlist them"


def test_uvicorn_sets_the_attributes_used() -> None:
    """uvicorn's own protocol, made and connected as its server does, has every attribute GuardedProtocol reads,
    and none of those GuardedProtocol adds (whose values uvicorn's code would then overwrite, or read)."""

    async def connect():
        config = loaded_config()
        state = ServerState()
        protocol, transport = open_connection(config, state, HttpToolsProtocol)
        return protocol, transport, state

    protocol, transport, state = asyncio.run(connect())
    attributes = vars(protocol)
    missing = ", ".join(f"self.{name}" for name in UVICORN_ATTRIBUTES if name not in attributes)
    assert not missing, (
        f"uvicorn {version('uvicorn')}'s HttpToolsProtocol no longer sets {missing} in __init__ or "
        f"connection_made; GuardedProtocol reads them: {HOW}"
    )
    assert protocol.transport is transport, "uvicorn no longer keeps the transport given to connection_made"
    assert protocol.server_state is state and protocol.connections is state.connections, (
        "uvicorn's protocol no longer shares the server's ServerState.connections: eviction and the sweep need it"
    )
    assert protocol in state.connections, "connection_made no longer adds the protocol to ServerState.connections"
    assert isinstance(protocol.flow, FlowControl) and protocol.flow.read_paused is False, (
        "uvicorn's FlowControl no longer has read_paused: GuardedProtocol._check reads it"
    )
    assert protocol.cycle is None and protocol.timeout_keep_alive_task is None and not protocol.pipeline, (
        "uvicorn's idle state changed (cycle None, no keep-alive timer, empty pipeline): GuardedProtocol._busy "
        "and on_message_complete assume it"
    )
    state.genserve_sweeping = True  # GuardedProtocol keeps its sweep flag on the ServerState
    _, assigned_in_init = names_used_on_self()
    clash = ", ".join(f"self.{name}" for name in sorted(assigned_in_init & set(attributes)))
    assert not clash, f"uvicorn now sets {clash} too, which GuardedProtocol uses for itself: rename them"
    for name in ("response_started", "response_complete", "scope"):
        assert name in inspect.getsource(RequestResponseCycle.__init__), (
            f"uvicorn's RequestResponseCycle no longer sets {name}: GuardedProtocol reads it on self.cycle"
        )


# ---- GuardedProtocol driven in memory, as uvicorn's server drives it --------------------------------


def test_guarded_protocol_serves_in_memory() -> None:
    async def run() -> None:
        config = loaded_config()
        assert config.http_protocol_class is GuardedProtocol
        state = ServerState()
        protocol, transport = open_connection(config, state)
        assert isinstance(protocol.transport, CoalescingTransport), "uvicorn no longer keeps the wrapped transport"
        assert protocol._phase == "headers" and getattr(state, "genserve_sweeping", False)

        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n")  # the last may still be folded
        assert protocol._phase == "headers" and protocol._header_lines >= 1, "on_header was not called per header"
        protocol.data_received(b"\r\n")
        assert protocol._phase == "app" and protocol.cycle is not None
        await turns()
        assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], (
            f"the response did not leave in one write through CoalescingTransport: {transport.writes}"
        )
        assert protocol.cycle.response_started and protocol.cycle.response_complete
        assert protocol._phase == "idle", "on_response_complete no longer reached GuardedProtocol"
        assert protocol.timeout_keep_alive_task is not None, "uvicorn no longer arms the keep-alive timer"

        # keep-alive: a second request on the same connection, its body in two pieces
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        assert protocol.timeout_keep_alive_task is None, "the keep-alive timer was not stopped by a new request"
        assert protocol._phase == "body" and protocol._body_bytes == 2
        protocol.data_received(b"cd")
        await turns()
        assert protocol._phase == "idle" and len(transport.writes) == 2 and transport.writes[1].endswith(b"ok")

        # a body that stalls: 408 from the sweep's check, and the connection closed
        slow, slow_transport = open_connection(config, state)
        slow.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        await turns()  # the app reads what arrived: reading is not held back
        assert slow._phase == "body" and not slow.flow.read_paused
        slow._check(time.monotonic() + GuardedProtocol.limits.body_timeout_s + 1)
        await turns()
        assert slow_transport.closed and slow_transport.writes[0].startswith(b"HTTP/1.1 408 ")

        # too many header lines: httptools stops at the callback's exception, and 431 is answered
        crowded, crowded_transport = open_connection(config, state)
        lines = b"".join(b"X-%d: y\r\n" % i for i in range(GuardedProtocol.limits.max_headers + 1))
        crowded.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        await turns()
        assert crowded_transport.closed and crowded_transport.writes[0].startswith(b"HTTP/1.1 431 "), (
            f"no 431 for {GuardedProtocol.limits.max_headers + 1} header lines: {crowded_transport.writes[:1]}"
        )

        # malformed: uvicorn's 400 (send_400_response, from the copy of data_received)
        bad, bad_transport = open_connection(config, state)
        bad.data_received(b"NOT HTTP\r\n\r\n")
        await turns()
        assert bad_transport.closed and bad_transport.writes[0].startswith(b"HTTP/1.1 400 ")

        # shutdown (uvicorn's Server.shutdown calls it on each connection): one without a request is closed
        waiting, waiting_transport = open_connection(config, state)
        waiting.shutdown()
        await turns()
        assert waiting_transport.closed

        for connection in list(state.connections):
            connection.connection_lost(None)
        assert not state.connections, "connection_lost no longer removes the protocol from ServerState.connections"

    asyncio.run(run())


# ---- what Supervisor takes from uvicorn's Multiprocess and Process ---------------------------------

# Supervisor replaces Multiprocess.keep_subprocess_alive, which uvicorn's run loop calls every 0.5 s,
# and keeps the rest: start-up, signals, the rolling restart (with the start-up timeout). Of
# Process it uses the pipe (__init__), the worker's answer to each ping (target starts a thread
# that answers every ping with `server.started`), kill, join and exitcode; and how a new one is made.
SUPERVISOR_METHODS = {
    "Multiprocess.__init__": Multiprocess.__init__,
    "Multiprocess.run": Multiprocess.run,
    "Multiprocess.keep_subprocess_alive": Multiprocess.keep_subprocess_alive,
    "Multiprocess.restart_all": Multiprocess.restart_all,
    "Process.__init__": Process.__init__,
    "Process.target": Process.target,
    "Process.always_pong": Process.always_pong,
    "Process.pong": Process.pong,
    "Process.start": Process.start,
    "Process.kill": Process.kill,
    "Process.join": Process.join,
    "Process.exitcode": Process.exitcode.fget,
    "Process.pid": Process.pid.fget,
}
# sha256 of each one's source (inspect.getsource, dedented) in uvicorn REVIEWED_UVICORN.
SUPERVISOR_SOURCE_SHA256 = {
    "Multiprocess.__init__": "6c2eb06aa793513dc77f3c7850dda8a805a781517f1986c1a7edf0be870f15d4",
    "Multiprocess.run": "451a5dcf478978e3c28948e2f2d919cb0ee8966187567c0cb6b0881946d0c720",
    "Multiprocess.keep_subprocess_alive": "45fe161ba923fe13a04d07499d619a1691be05b5ea0e65dffb4ce81944fb2be6",
    "Multiprocess.restart_all": "0ed339a48a988711d3eb3f973af30305b3131d755b9f09cba9f8b66acc4beaed",
    "Process.__init__": "7e3a11a37423096146162c547a3449ab2dd5d5c10b7e32ad5b5cff68a325fc2a",
    "Process.target": "6a4fee0631727ffdee7e184a2a759a39b0cba4d2605196f94a8a9937f92ae92e",
    "Process.always_pong": "95d47b85a1073bb5fc1f0b858199c3257ad85758b9458f07df27761dda7b2b73",
    "Process.pong": "1bddcfb473d165166ff6f54b6a66f1e26ae8ea119d27b18e91a1dceca166723e",
    "Process.start": "b8082a1bb5693620543f4790fc8b4310c19c5cb2833c3bff5f6fe4c168d13665",
    "Process.kill": "ba286568618543f3d1d4d35e8b8c256db3f1039b1267d49a16c76f96650b76ec",
    "Process.join": "24af1ec26cb2595a746f0e7310578f154ca5677f0b2b58659443faac1e066445",
    "Process.exitcode": "a049d812a16bafa0eb2206c49e50d7cf7de3ea90f619c47c1fc9f209db42a171",
    "Process.pid": "f701eb2fbed3fadc1c4f1f839d75fa693055b042b144709aff7ea5d7f69b8e8a",
}


def supervisor_source_sha256() -> dict[str, str]:
    return {name: source_sha256(function) for name, function in SUPERVISOR_METHODS.items()}


def test_uvicorn_supervisor_sources_are_the_reviewed_ones() -> None:
    why = "app/supervisor.py replaces Multiprocess.keep_subprocess_alive and relies on the others"
    assert_reviewed(supervisor_source_sha256(), SUPERVISOR_SOURCE_SHA256, "uvicorn's", why, "SUPERVISOR_SOURCE_SHA256")
    overridden = {name for name in vars(Supervisor) if callable(getattr(Multiprocess, name, None))}
    assert overridden == {"__init__", "keep_subprocess_alive"}, (
        f"Supervisor now overrides Multiprocess's {sorted(overridden)}: review uvicorn's and list them above"
    )
    assert inspect.signature(Multiprocess.__init__) == inspect.signature(Supervisor.__init__)


def test_a_uvicorn_worker_answers_each_ping_on_its_pipe_with_its_started_flag() -> None:
    """The protocol worker_problem speaks, driven on an unstarted uvicorn Process: the worker's
    side answers each ping with its server's `started`; a Process not started has no exit code."""
    worker = Process(Config(app=asgi_app, workers=2), sockets=[])
    try:
        assert worker.exitcode is None and worker.pid is None
        for started in (False, True):
            worker._server = type("Server", (), {"started": started})()  # the worker's uvicorn Server
            health = WorkerHealth(seen_at=0.0)
            assert worker_problem(worker, health, 0.0, start_timeout_s=120) is None  # sends a ping
            worker.pong()  # the worker's side, as its answering thread runs it
            assert worker.parent_conn.poll(5), "uvicorn's Process.pong did not answer the ping"
            assert worker_problem(worker, health, 0.1, start_timeout_s=120) is None  # reads it, pings again
            assert health.serving is started
            assert worker.child_conn.recv() == b"ping"
    finally:
        worker.parent_conn.close()
        worker.child_conn.close()


def test_send_waits_for_room_and_a_stalled_client_is_cut_off() -> None:
    """/generate/stream's bound on what a slow client holds rests on uvicorn's flow control
    (app/api/routes/inference.py, `_sliced`): while the transport is over its high-water mark, `send`
    waits before writing the next message (an empty body chunk too, which writes nothing). A client
    that takes nothing for the send deadline is aborted by the sweep's check, and the app's waiting
    send returns and its receive says disconnect."""
    events: list[str] = []
    connection: GuardedProtocol | None = None

    async def streaming_app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        assert connection is not None
        connection.pause_writing()  # as the transport does when a write takes it over its high-water mark
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        events.append("room")
        connection.pause_writing()  # ... and again: the client takes nothing more
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        events.append("returned")
        events.append((await receive())["type"])

    async def run() -> None:
        nonlocal connection
        state = ServerState()
        connection, transport = open_connection(loaded_config(streaming_app), state)
        connection.data_received(b"GET /rows HTTP/1.1\r\nHost: x\r\n\r\n")
        await turns()
        assert transport.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n"], (
            transport.writes
        )
        assert events == [], "uvicorn's send no longer waits for the transport to drain before a message"
        assert (connection.cycle.scope["method"], connection.cycle.scope["path"]) == ("GET", "/rows")
        connection.resume_writing()  # the transport drained to its low-water mark
        await turns()
        assert events == ["room"] and len(transport.writes) == 1, "an empty chunk was written"

        transport.buffered = 10  # unsent, and it stays so
        now = time.monotonic()
        connection._check(now)
        assert not transport.closed
        connection._check(now + GuardedProtocol.limits.send_timeout_s + 1)
        assert transport.closed, "a client that took nothing for the send deadline was not cut off"
        connection.connection_lost(None)  # as the aborted transport reports
        await turns()
        assert events == ["room", "returned", "http.disconnect"], events

    asyncio.run(run())


if __name__ == "__main__":  # print the tables to paste above, once uvicorn's changes are reviewed
    print(f"# uvicorn {version('uvicorn')}", file=sys.stderr)
    print("UVICORN_SIGNATURES = {")
    for name in (*OVERRIDDEN, *CALLED):
        params = [f'"{p.name}"' for p in inspect.signature(getattr(HttpToolsProtocol, name)).parameters.values()]
        print(f'    "{name}": ({", ".join(params)}{"," if len(params) == 1 else ""}),')
    print("}")
    for table, digests in (
        ("UVICORN_SOURCE_SHA256", uvicorn_source_sha256()),
        ("SUPERVISOR_SOURCE_SHA256", supervisor_source_sha256()),
    ):
        print(f"{table} = {{")
        for name, digest in digests.items():
            print(f'    "{name}": "{digest}",')
        print("}")
