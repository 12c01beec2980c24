"""`stylemapgan serve`: the real-time web editor (local editing, reconstruction, samples, interpolation and
attribute sliders) on a local port. A thin layer: load the model, gallery and directions, bind the socket
(so port 0 works and the printed URL is exact), and run uvicorn over `stylemapgan.serving.create_app`."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from stylemapgan.cli import CLIError
from stylemapgan.cli.options import add_dtype_option

ALL_INTERFACES = ("0.0.0.0", "::", "")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="real-time web editor in the browser (paint masks, blend, sample)")
    p.add_argument("--ckpt", default=None,
                   help="checkpoint file or bundled model name (default: the bundled cartoon-faces model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port, printed)")
    p.add_argument("--gallery", default=None,
                   help="prepared dataset (its test images; part masks enable one-click part masks) or a folder "
                        "of images (default: the model's sample images, if it ships some)")
    p.add_argument("--gallery-count", type=int, default=32, help="images shown from the gallery (default 32)")
    p.add_argument("--directions", default=None,
                   help="directions file (`stylemapgan directions`) for attribute sliders")
    p.add_argument("--direction-range", type=float, default=10.0, help="attribute slider range +-R (default 10)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for inference (default: torch's)")
    add_dtype_option(p)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload in MB (default 10)")
    p.add_argument("--max-upload-megapixels", type=float, default=25.0, help="largest upload in megapixels (25)")
    p.add_argument("--max-sessions", type=int, default=64,
                   help="browser (cookie) sessions kept; beyond this one without uploads goes first, else the least "
                        "recently used (default 64; cookie-less requests share one anonymous session)")
    p.add_argument("--max-queue", type=int, default=32,
                   help="model jobs queued over all sessions; beyond this a request gets 503 and the page retries "
                        "(default 32)")
    p.add_argument("--refine-niceness", type=int, default=10,
                   help="nice value added to the refine worker (Linux), so edits get the CPU first; 0: same "
                        "priority as the edits (default 10)")
    p.add_argument("--cache-mb", type=float, default=1024.0,
                   help="memory for cached encodings (w+ style tensors included; default 1024)")
    p.add_argument("--modulation-cache-mb", type=float, default=1024.0,
                   help="memory for the per-image modulations fast edits reuse (default 1024)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default warning)")
    p.set_defaults(handler=cmd_serve)


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port (port 0: the kernel picks one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)  # connections made as soon as the URL is printed wait here until uvicorn serves
    except OSError as exc:
        raise CLIError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ALL_INTERFACES else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def cmd_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from stylemapgan.cli import resolve_device
    from stylemapgan.editing import EditingError, Editor, load_directions
    from stylemapgan.models import resolve_checkpoint
    from stylemapgan.serving import LOOPBACK_HOSTS, ServerLimits, card_reference, create_app, load_gallery

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port: must be in 0..65535, got {args.port}")
    for name in ("gallery_count", "max_sessions", "max_queue"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')}: must be >= 1")
    if not 0 <= args.refine_niceness <= 19:
        raise CLIError(f"--refine-niceness: must be in 0..19, got {args.refine_niceness}")
    if min(args.max_upload_mb, args.max_upload_megapixels, args.cache_mb, args.modulation_cache_mb) <= 0:
        raise CLIError("--max-upload-mb / --max-upload-megapixels / --cache-mb / --modulation-cache-mb: must be > 0")
    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    limits = ServerLimits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_upload_pixels=int(args.max_upload_megapixels * 1_000_000),
        max_sessions=args.max_sessions,
        max_pending_jobs=args.max_queue,
        refine_niceness=args.refine_niceness,
        encoding_cache_mb=args.cache_mb,
        modulation_cache_mb=args.modulation_cache_mb,
    )
    checkpoint = resolve_checkpoint(args.ckpt)
    device = resolve_device(args.device)
    try:
        from stylemapgan.perf.tuning import tune_allocator

        tune_allocator()  # what `stylemapgan bench` measures with (perf.tuning)
        # create_app sizes its caches to `limits`
        editor = Editor.from_checkpoint(checkpoint, device=device, dtype=args.dtype)
        gallery = load_gallery(args.gallery, editor.size, Path(checkpoint), args.gallery_count)
        directions = {}
        if args.directions is None:  # a bundled model brings its attribute directions
            from stylemapgan.models import bundled_directions

            shipped = bundled_directions(checkpoint)
            args.directions = str(shipped) if shipped is not None else None
        if args.directions is not None:
            if not Path(args.directions).is_file():
                raise CLIError(f"--directions {args.directions}: no such file")
            directions = load_directions(args.directions, editor.code_shape)
    except EditingError as exc:
        raise CLIError(str(exc)) from None

    all_interfaces = args.host in ALL_INTERFACES
    allowed_hosts = ["*"] if all_interfaces else sorted({*LOOPBACK_HOSTS, args.host.lower()})
    domain = card_reference(checkpoint)  # uploads far worse than the model's own test images get a warning
    app = create_app(editor, gallery=gallery, directions=directions, limits=limits, allowed_hosts=allowed_hosts,
                     model_name=Path(checkpoint).stem, direction_range=args.direction_range, domain=domain)
    sock = _bind(args.host, args.port, limits.listen_backlog)
    port = sock.getsockname()[1]
    print(f"stylemapgan serve: model {checkpoint} ({editor.size} px, {editor.device}); gallery: {len(gallery)} "
          f"image(s) from {gallery.source}; directions: {len(directions)}; domain warning: "
          + (f"uploads reconstructing worse than {domain.threshold:.4f} MSE" if domain else "off (no model card)"),
          flush=True)
    if all_interfaces:
        print("stylemapgan serve: warning: listening on every interface; anyone who can reach this machine can use "
              "the editor", file=sys.stderr, flush=True)
    print(f"stylemapgan serve: open {_url(args.host, port)}  (Ctrl+C to stop)", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, limit_concurrency=limits.max_connections,
                            timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
