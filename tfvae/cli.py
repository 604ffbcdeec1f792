"""`tfvae`: a thin command line over the Python API.

Every subcommand parses and checks its flags, then calls the API
(`tfvae.training.train`, `VAE.sample`, ...). Mistakes a user can fix end in one
line on stderr and exit status 2, never a traceback. The model commands live in
`tfvae.commands`; `tfvae serve` runs without them, and without TensorFlow or Keras
for the ONNX backend (see `tfvae._serving_only`).
"""

import os
import sys

import tfvae
from tfvae._native import native_stderr_silenced
from tfvae.cli_arguments import (
    INTERRUPTED,
    USAGE_ERROR,
    Parser,
    batch_delay,
    port,
    positive_float,
    positive_int,
)
from tfvae.errors import TfvaeError
from tfvae.serving import ServerConfig, access, create_app, uvicorn_config
from tfvae.serving.backends import BACKENDS


def _add_serve(subparsers):
    defaults = ServerConfig(export_dir="")
    p = subparsers.add_parser(
        "serve",
        help="serve an export repository over KServe v2 and TF Serving, REST and gRPC",
        description="Load every model in EXPORT_DIR and serve it over HTTP: KServe v2 (/v2/...), "
        "TF Serving REST (/v1/models/...), generation (:generate) and /metrics; with --grpc-port, "
        "also KServe v2 (and with --tfserving-grpc, TF Serving) over gRPC.",
    )
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="a repository written by `tfvae export`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8000, help="REST (KServe v2 and TF Serving)")
    p.add_argument(
        "--grpc-port",
        type=port,
        default=defaults.grpc_port,
        help="also serve KServe v2 over gRPC (inference.GRPCInferenceService) on this port, e.g. 8001",
    )
    p.add_argument(
        "--tfserving-grpc",
        action="store_true",
        help="on --grpc-port, also TF Serving's gRPC PredictionService and ModelService "
        "(their protos import TensorFlow: start-up takes seconds longer and more memory)",
    )
    p.add_argument("--backend", choices=BACKENDS, default=defaults.backend)
    p.add_argument("--max-batch-size", type=positive_int, default=defaults.max_batch_size)
    p.add_argument(
        "--batch-delay-ms",
        type=batch_delay,
        default=defaults.batch_delay_ms,
        help="how long a request waits for others to share its model run (0 to 1000)",
    )
    p.add_argument("--max-body-mib", type=positive_float, default=defaults.max_body_bytes / 2**20)
    p.add_argument(
        "--max-rows",
        type=positive_int,
        default=defaults.max_rows,
        help="most instances (or :generate samples) per request",
    )
    p.add_argument(
        "--poll-seconds",
        type=positive_float,
        default=defaults.poll_seconds,
        help="look at EXPORT_DIR this often and serve what changed: new versions loaded and swapped in, "
        "broken ones refused (the others serve on), removed ones unloaded (default: never)",
    )
    p.add_argument(
        "--latest-versions",
        type=positive_int,
        default=defaults.latest_versions,
        metavar="N",
        help="serve each model's N newest servable versions (default: every version)",
    )
    p.add_argument(
        "--max-queue-rows",
        type=positive_int,
        default=defaults.max_queue_rows,
        help="rows a model's batch queue holds; past it requests are refused at once "
        "(503 with Retry-After; gRPC UNAVAILABLE) instead of waiting",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="ONNX Runtime threads per model (default: all cores; one for a pixel-by-pixel generator)",
    )
    p.add_argument(
        "--header-timeout-s",
        type=positive_float,
        default=defaults.header_timeout_s,
        help="a connection must send a request's headers within this many seconds (else it is closed)",
    )
    p.add_argument(
        "--body-timeout-s",
        type=positive_float,
        default=defaults.body_timeout_s,
        help="a request's whole body must arrive within this many seconds (else 408)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=defaults.max_connections,
        help="connections and requests served at once; more are answered 503",
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        default=None,
        help="require API keys ('Authorization: Bearer KEY', REST and gRPC): one per line, KEY (every "
        "endpoint but health) or GROUP[,GROUP...]=KEY with groups inference, metadata, health, metrics, repository",
    )
    p.add_argument("--tls-cert", metavar="PEM", default=None, help="serve REST and gRPC over TLS with this certificate")
    p.add_argument("--tls-key", metavar="PEM", default=None, help="the private key of --tls-cert")
    p.add_argument(
        "--ready-when",
        choices=("all", "any"),
        default=defaults.ready_when,
        help="/v2/health/ready is 200 when every model serves its newest version (all) or when one model serves (any)",
    )
    p.set_defaults(handler=_serve)


def _serve(args):
    import uvicorn

    if args.max_queue_rows < args.max_rows:
        raise TfvaeError(
            f"--max-queue-rows {args.max_queue_rows} is below --max-rows {args.max_rows}: a request "
            "of the largest allowed size could never be queued; raise --max-queue-rows."
        )

    if args.tfserving_grpc and args.grpc_port is None:
        raise TfvaeError("--tfserving-grpc serves on the gRPC port: add --grpc-port PORT (e.g. 8500).")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise TfvaeError("--tls-cert and --tls-key go together: give the certificate and its private key.")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not os.path.isfile(path):
            raise TfvaeError(f"{flag} {path}: no such file; give a PEM file.")
    api_keys = access.read_key_file(args.api_key_file) if args.api_key_file else None

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:  # announced once the socket is bound, not before
                names = ", ".join(f"{name} (v{','.join(sorted(v, key=int))})" for name, v in models.items())
                grpc = f" and grpc://{args.host}:{args.grpc_port}" if args.grpc_port else ""
                scheme = "https" if args.tls_cert else "http"
                print(f"tfvae serve: {names} on {scheme}://{args.host}:{args.port}{grpc}", flush=True)

    models = {}
    config = ServerConfig(
        export_dir=args.export_dir,
        backend=args.backend,
        max_batch_size=args.max_batch_size,
        batch_delay_ms=args.batch_delay_ms,
        max_body_bytes=int(args.max_body_mib * 2**20),
        max_rows=args.max_rows,
        threads=args.threads,
        ready_when=args.ready_when,
        on_ready=models.update,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        max_connections=args.max_connections,
        host=args.host,
        grpc_port=args.grpc_port,
        tfserving_grpc=args.tfserving_grpc,
        max_queue_rows=args.max_queue_rows,
        poll_seconds=args.poll_seconds,
        latest_versions=args.latest_versions,
        api_keys=api_keys,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    # uvicorn handles SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish
    # (up to the graceful timeout), runs the app's shutdown, then re-raises the signal so
    # the exit status tells supervisors the server was stopped by it (143 for SIGTERM).
    server = _Server(uvicorn_config(create_app(config), config, args.port))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind, having logged why
        if server.started:
            raise
    if not server.started:
        ports = f"{args.port}" + (f" (or gRPC {args.grpc_port})" if args.grpc_port else "")
        raise TfvaeError(
            f"cannot listen on {args.host}:{ports} (see the message above); choose another "
            + ("--port or --grpc-port." if args.grpc_port else "--port.")
        )
    return 0


def build_parser(serve_only=False):
    """The `tfvae` parser; with `serve_only`, the serve command alone (no model commands,
    so no TensorFlow)."""
    parser = Parser(prog="tfvae", description="Variational autoencoders in Keras 3 and TFP.")
    parser.add_argument("--version", action="version", version=f"tfvae {tfvae.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    parser.commands = subparsers.choices  # {command: its parser}
    if not serve_only:
        from tfvae import commands

        commands.add_commands(subparsers)
    _add_serve(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    serve_only = argv[:1] == ["serve"]
    parser = build_parser(serve_only)
    args, unrecognized = parser.parse_known_args(argv)
    if unrecognized:
        # argparse leaves extra words to the top parser, whose --help lists commands, not
        # the options the user meant: the command's own parser reports them.
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unrecognized)}")
    if not serve_only:
        import tensorflow as tf

        with native_stderr_silenced():  # CUDA probing chatter on CPU-only machines
            tf.config.list_physical_devices()
    try:
        return args.handler(args)
    except (TfvaeError, OSError) as error:
        print(f"tfvae {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"tfvae {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(error, (tf.errors.PermissionDeniedError, tf.errors.ResourceExhaustedError)):
            raise
        # TensorFlow's file and memory errors are no OSError; their first line says what and where.
        print(f"tfvae {args.command}: error: {error.message.splitlines()[0]}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
