"""Publishing to the marketplace gateway from Python (grpcio), following docs/CLIENTS.md.

Run `examples/generate.sh OUT` first (buf generate), then, with OUT/python on PYTHONPATH:

    GATEWAY_ADDR=127.0.0.1:50051 STORE_ID=eu-1 STORE_TOKEN=... python3 publish.py

Set GATEWAY_CA to a PEM file to connect with TLS. It publishes a batch, shows how a refused
batch names the broken fields (google.rpc.BadRequest), and retries RESOURCE_EXHAUSTED after
the google.rpc.RetryInfo delay. It exits non-zero if any step does not behave as documented,
which is how the test suite runs it (e2e test `python_and_node_examples_run_against_the_gateway`).
"""

import os
import random
import sys
import time
import uuid

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from marketplace.ingest.v1 import ingest_pb2, ingest_pb2_grpc

# The contract's retry table: these are retried, everything else is final.
RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def details(error):
    """The google.rpc details of a failed call, by kind."""
    status = rpc_status.from_call(error)
    found = {}
    for any_detail in status.details if status else []:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.RetryInfo,
                     error_details_pb2.ErrorInfo, error_details_pb2.QuotaFailure):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                found[kind.__name__] = message
    return found


def publish(stub, token, request, attempts=10, base=0.1, cap=10.0):
    """Publishes `request`, retrying per the contract with the identical request (same
    event ids): exponential backoff with full jitter, never sooner than RetryInfo.
    Returns (response, retries)."""
    for attempt in range(attempts):
        try:
            response = stub.Publish(request, metadata=[("authorization", f"Bearer {token}")],
                                    timeout=10)
            return response, attempt
        except grpc.RpcError as error:
            found = details(error)
            retry_info = found.get("RetryInfo")
            retriable = error.code() in RETRIED or (
                error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_info is not None)
            if not retriable or attempt + 1 == attempts:
                raise
            wait = random.uniform(0, min(cap, base * 2 ** attempt))
            if retry_info is not None:
                wait = max(wait, retry_info.retry_delay.ToTimedelta().total_seconds())
            print(f"retrying after {error.code().name}, waiting {wait:.2f}s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def probe(store_id, target="checkout"):
    occurred = Timestamp()
    occurred.GetCurrentTime()
    return ingest_pb2.Event(
        event_id=str(uuid.uuid4()), occurred_at=occurred, store_id=store_id,
        region=ingest_pb2.REGION_EUROPE,
        probe=ingest_pb2.ProbeResult(target=target, up=True, status_code=200,
                                     response_time_ms=12))


def channel(addr):
    ca = os.environ.get("GATEWAY_CA")
    if ca:
        with open(ca, "rb") as f:
            return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=f.read()))
    return grpc.insecure_channel(addr)


def main():
    addr, token, store = os.environ["GATEWAY_ADDR"], os.environ["STORE_TOKEN"], os.environ["STORE_ID"]
    stub = ingest_pb2_grpc.IngestServiceStub(channel(addr))

    # 1. a batch: every valid event is queued
    batch = ingest_pb2.PublishRequest(events=[probe(store) for _ in range(5)])
    response, _ = publish(stub, token, batch)
    assert response.accepted == 5 and not response.rejected, response
    print(f"published a batch: {response.accepted} accepted")

    # 2. an invalid event: listed with its field path, or the whole batch refused with
    #    BadRequest when all_or_nothing is set
    bad = probe(store)
    bad.event_id = "not-a-uuid"
    response, _ = publish(stub, token, ingest_pb2.PublishRequest(events=[probe(store), bad]))
    assert response.accepted == 1 and response.rejected[0].index == 1, response
    print("rejected:", [(v.field, v.description) for v in response.rejected[0].violations])
    try:
        publish(stub, token, ingest_pb2.PublishRequest(events=[bad], all_or_nothing=True))
        raise AssertionError("an invalid all_or_nothing batch was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        violations = details(error)["BadRequest"].field_violations
        assert violations[0].field == "events[0].event_id", violations
        print("bad request:", [(v.field, v.description) for v in violations])

    # 3. over the store's quota: RESOURCE_EXHAUSTED with RetryInfo, retried after the delay
    quota = int(os.environ.get("STORE_QUOTA", "0"))
    if quota:
        retries = 0
        for _ in range(3):
            batch = ingest_pb2.PublishRequest(events=[probe(store) for _ in range(quota)])
            response, retried = publish(stub, token, batch)
            assert response.accepted == quota, response
            retries += retried
        assert retries > 0, "three seconds' worth at once must meet the quota"
        print(f"quota: every batch accepted after {retries} retries")
    print("python example: ok")


if __name__ == "__main__":
    sys.exit(main())
