"""Access control: API keys per group of endpoints, on REST and gRPC alike.

The groups follow Triton's restricted APIs: "inference" (v2 infer, TF Serving predict,
:generate), "metadata" (server and model metadata, TF Serving model status), "health"
(liveness and readiness), "metrics" (/metrics and the v2 statistics) and "repository". A group with keys
answers only requests that carry one of them, as `Authorization: Bearer KEY` (an HTTP
header, or gRPC metadata `authorization`); a group without keys stays open. Refusals
are REST 401 with `WWW-Authenticate: Bearer` and gRPC UNAUTHENTICATED.
"""

import hmac

from tfvae.errors import TfvaeError
from tfvae.serving.http import json_response

GROUPS = ("inference", "metadata", "health", "metrics", "repository")
# What a key given without groups guards: health stays open to load balancers' probes.
UNNAMED_KEY_GROUPS = ("inference", "metadata", "metrics", "repository")
GRPC_GROUPS = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "Check": "health",  # grpc.health.v1.Health
    "Watch": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "RepositoryIndex": "repository",
    "RepositoryModelLoad": "repository",
    "RepositoryModelUnload": "repository",
    # TF Serving's tensorflow.serving.PredictionService and ModelService
    "Predict": "inference",
    "GetModelMetadata": "metadata",
    "GetModelStatus": "health",
}


def read_key_file(path):
    """`{group: (key, ...)}` from a file of lines `KEY` (guarding `UNNAMED_KEY_GROUPS`) or
    `GROUP[,GROUP...]=KEY`; blank lines and lines starting with # are skipped. Keys live
    in a file, not on the command line, where every user of the machine could read them."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise TfvaeError(f"cannot read the API key file {path}: {error.strerror}.") from None
    keys = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        groups, _, key = line.rpartition("=") if "=" in line else ("", "", line)
        named = [group.strip() for group in groups.split(",")] if groups else list(UNNAMED_KEY_GROUPS)
        unknown = [group for group in named if group not in GROUPS]
        if unknown or not key.strip() or any(c.isspace() for c in key.strip()):
            raise TfvaeError(
                f"{path}, line {number}: expected KEY or GROUP[,GROUP...]=KEY with groups from "
                f"{', '.join(GROUPS)} and a key without spaces; got "
                + (f"unknown group {unknown[0]!r}." if unknown else "no usable key.")
            )
        for group in named:
            keys.setdefault(group, []).append(key.strip())
    if not keys:
        raise TfvaeError(f"the API key file {path} holds no key; write one per line (KEY or GROUP=KEY).")
    return {group: tuple(group_keys) for group, group_keys in keys.items()}


class Keys:
    """The keys of each group, and the check a request passes.

    Args:
      by_group: `{group: (key, ...)}`, e.g. from `read_key_file`.
    """

    def __init__(self, by_group):
        unknown = set(by_group) - set(GROUPS)
        if unknown:
            raise TfvaeError(f"unknown API key groups {sorted(unknown)}; the groups are {', '.join(GROUPS)}.")
        self.by_group = {group: tuple(key.encode() for key in keys) for group, keys in by_group.items() if keys}

    def refusal(self, group, authorization):
        """None when a request to `group` with this Authorization value may pass, else why not."""
        keys = self.by_group.get(group)
        if not keys:
            return None
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return f"{group} endpoints need an API key: send the header 'Authorization: Bearer <key>'"
        given = token.strip().encode()
        # Every key is compared in full, whatever matched: the time taken tells nothing
        # about which key, or how much of one, the token matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        return None if matched else f"the API key is not one of this server's keys for {group} endpoints"


def rest_group(path):
    """The group of a REST path."""
    if path.startswith("/v2/health") or path.endswith("/ready"):
        return "health"
    if path == "/metrics" or path.endswith("/stats"):
        return "metrics"
    if path.startswith("/v2/repository"):
        return "repository"
    if path.endswith("/infer") or (path.startswith("/v1/models/") and ":" in path.rsplit("/", 1)[-1]):
        return "inference"
    return "metadata"


def grpc_group(method):
    """The group of a gRPC method ("/inference.GRPCInferenceService/ModelInfer")."""
    return GRPC_GROUPS.get(method.rsplit("/", 1)[-1], "metadata")


class RequireKeys:
    """ASGI middleware: answers 401 to a REST request without a key of its path's group.

    Args:
      app: the ASGI app it guards.
      keys: `Keys`.
      on_refusal: called for each refused request (the server's metrics count them).
    """

    def __init__(self, app, keys, on_refusal):
        self.app, self.keys, self.on_refusal = app, keys, on_refusal

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
            message = self.keys.refusal(rest_group(scope["path"]), authorization)
            if message is not None:
                self.on_refusal()
                response = json_response({"error": message}, 401)
                response.headers["www-authenticate"] = 'Bearer realm="tfvae"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
