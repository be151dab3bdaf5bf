"""Container health probe for Tunery images: exit 0 when the service answers, 1 when it does not.

gRPC services are asked through `grpc.health.v1` (the overall status, service ""), the gateway through
`GET /health`. The service and port come from the image (`SERVICE`) and its `TUNERY_<SERVICE>_PORT`, so one file
serves every image; Kubernetes does not use it (its native `grpc:` and `httpGet:` probes do the same job).

Usage: healthcheck.py [SERVICE] [PORT]
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"dataset": 50051, "trainer": 50052, "evaluator": 50053, "gateway": 8000}
HTTP_SERVICES = {"gateway"}
TIMEOUT = 3.0


def grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        except grpc.RpcError as err:
            print(f"{address}: {err.code().name}", file=sys.stderr)  # type: ignore[attr-defined]
            return False
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}", file=sys.stderr)
        return False
    return True


def http_healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=TIMEOUT) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError) as err:
        print(f"{address}/health: {err}", file=sys.stderr)
        return False


def main(argv: list[str]) -> int:
    service = argv[1] if len(argv) > 1 else os.environ.get("SERVICE", "")
    if service not in DEFAULT_PORTS:
        print(f"unknown service {service!r}; valid: {', '.join(DEFAULT_PORTS)}", file=sys.stderr)
        return 2
    raw = argv[2] if len(argv) > 2 else os.environ.get(f"TUNERY_{service.upper()}_PORT", "")
    port = int(raw) if raw.strip() not in ("", "0") else DEFAULT_PORTS[service]
    address = f"127.0.0.1:{port}"
    ok = http_healthy(address) if service in HTTP_SERVICES else grpc_serving(address)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
