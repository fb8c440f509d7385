"""``run_server``: what ``lmforge serve RUN_OR_EXPORT`` calls."""

from __future__ import annotations

import socket
from pathlib import Path

from lmforge.errors import UserError
from lmforge.serve.store import ModelStore, resolve_target


def default_window_file(target: Path) -> Path | None:
    """<run>/monitor/traffic.jsonl for a run folder (one with export/); None otherwise."""
    target = Path(target)
    return target / "monitor" / "traffic.jsonl" if (target / "export").is_dir() else None


def run_server(target: Path | str, serve_cfg, say=print) -> None:
    """Load ``target`` and serve it with uvicorn on serve_cfg.host:port until interrupted.

    target: a run folder (serves export/merged/, else export/adapter/ over the base named in its
    adapter_config.json), an HF model folder, or a PEFT adapter folder. Bad targets, adapters, a port or
    host that cannot be used, and a non-loopback host without an API key
    (:func:`lmforge.serve.access.check_bind`) raise UserError before anything is served.
    """
    import uvicorn

    from lmforge.serve.access import check_bind
    from lmforge.serve.app import create_app

    check_bind(serve_cfg.host, serve_cfg.resolved_api_keys(), where="serve.host")
    resolved = resolve_target(target, serve_cfg)
    sock = bind(serve_cfg.host, serve_cfg.port)  # before the model loads: a taken port fails fast
    try:
        store = ModelStore(resolved, serve_cfg.dtype)
        app = create_app(store, serve_cfg, window_file=default_window_file(Path(target)))
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        port = sock.getsockname()[1]  # port=0 picks a free one
        say(f"serving {target} on http://{serve_cfg.host}:{port}/v1 ({store.layout}; Ctrl-C to stop)")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; UserError naming serve.host / serve.port when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"cannot use host {host!r}: {exc}", where="serve.host",
                        hint="use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", where="serve.port",
                        hint="another server may use that port: pick another one, e.g. port=8081") from None
    sock.set_inheritable(True)
    return sock
