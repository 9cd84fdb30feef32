#!/usr/bin/env python3
"""Smoke client for a running authz server, loaded with examples/demo.json.

    clients/python/generate.sh /tmp/authz-stubs
    PYTHONPATH=/tmp/authz-stubs /usr/bin/python3 clients/python/authz_client.py 127.0.0.1:50051

The address comes from argv[1], else $AUTHZ_ADDR. With $AUTHZ_API_KEY set,
every call carries `authorization: Bearer <key>` (needed unless the server
runs with AUTHZ_AUTH=off). Each answer is checked against the demo data; on
the first mismatch the client prints why and exits with status 1.
"""
import os
import sys
import time
import uuid

try:
    import grpc
    from authz.v1 import common_pb2 as common
    from authz.v1 import permission_service_pb2 as perm
    from authz.v1 import permission_service_pb2_grpc as perm_grpc
    from authz.v1 import rate_limit_service_pb2 as rl
    from authz.v1 import rate_limit_service_pb2_grpc as rl_grpc
    from google.rpc import error_details_pb2, status_pb2
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError as e:
    sys.exit(f"authz_client: {e}: run with a Python that has grpc (Debian: /usr/bin/python3 with python3-grpcio)"
             " and PYTHONPATH set to the directory clients/python/generate.sh wrote")

ENG = common.ResourceRef(type="organization", id="00000002-0000-4000-8000-000000000001")
ALICE = common.SubjectRef(type="user", id="00000003-0000-4000-8000-000000000001")  # owner of acme-eng
BOB = common.SubjectRef(type="user", id="00000003-0000-4000-8000-000000000002")  # admin of acme-eng
DAVE = common.SubjectRef(type="user", id="00000003-0000-4000-8000-000000000004")  # locked
DEADLINE = 5.0  # seconds, for every call
GRANTED, NO_GRANT, LOCKED = perm.DECISION_REASON_GRANTED, perm.DECISION_REASON_NO_GRANT, perm.DECISION_REASON_SUBJECT_LOCKED


class Mismatch(Exception):
    pass


def expect(ok, what, got):
    if not ok:
        raise Mismatch(f"{what}; got: {str(got).strip() or '(empty)'}")


def reason(r):
    return perm.DecisionReason.Name(r)


def seconds(d):
    return d.seconds + d.nanos / 1e9


def run(channel, md):
    out = []
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE)
    expect(health.status == health_pb2.HealthCheckResponse.SERVING, "Health: expected SERVING", health)
    perms = perm_grpc.PermissionServiceStub(channel)

    def check(subject, permission, **kw):
        req = perm.CheckRequest(subject=subject, permission=permission, resource=ENG, explain=True, **kw)
        return perms.Check(req, timeout=DEADLINE, metadata=md)

    allow = check(ALICE, "members.read")
    path = [f"{perm.ExplanationStepKind.Name(s.kind)[22:]}:{s.key}" for s in allow.explanation.steps]
    expect(allow.allowed and allow.reason == GRANTED, "Check alice members.read: expected allowed/GRANTED", allow)
    expect("ROLE:owner" in path and path[-1] == "PERMISSION:members.read", "Check alice: expected a path via owner", allow)
    # Read at least as fresh as the first answer: pass its revision back.
    deny = check(BOB, "org.delete", consistency=common.Consistency(at_least_as_fresh=allow.revision))
    expect(not deny.allowed and deny.reason == NO_GRANT and deny.explanation.message, "Check bob org.delete: expected denied/NO_GRANT with an explanation", deny)
    out.append(f"Check: alice members.read allowed ({' > '.join(path)}); bob org.delete denied ({reason(deny.reason)}) at revision {deny.revision}")

    items = [perm.CheckBulkRequestItem(correlation_id=c, subject=s, permission="members.read", resource=ENG)
             for c, s in (("alice", ALICE), ("dave", DAVE), ("bad", common.SubjectRef(type="robot", id="r2d2")))]
    bulk = perms.CheckBulk(perm.CheckBulkRequest(items=items), timeout=DEADLINE, metadata=md)
    got = [(r.correlation_id, r.allowed, r.reason, r.error.code) for r in bulk.results]
    expect(got == [("alice", True, GRANTED, ""), ("dave", False, LOCKED, ""), ("bad", False, 0, "INVALID_ARGUMENT")],
           "CheckBulk: expected alice GRANTED, dave SUBJECT_LOCKED, bad INVALID_ARGUMENT", got)
    out.append(f"CheckBulk: 3 items -> GRANTED, SUBJECT_LOCKED, error INVALID_ARGUMENT ({bulk.results[2].error.message})")

    listing = perms.ListPermissions(perm.ListPermissionsRequest(subject=ALICE), timeout=DEADLINE, metadata=md)
    eng = [s for s in listing.scopes if s.org_id == ENG.id and s.scope.type == "organization"]
    expect(len(eng) == 1 and eng[0].user_role == "owner" and "org.delete" in eng[0].user_permissions,
           "ListPermissions alice: expected acme-eng with user_role owner and org.delete",
           [(s.url_safe_org_name, s.scope.type, s.user_role, list(s.user_permissions)) for s in listing.scopes])
    out.append(f"ListPermissions: alice is {eng[0].user_role} of {eng[0].url_safe_org_name} ({len(eng[0].user_permissions)} permissions)")

    try:
        check(ALICE, "members.read", consistency=common.Consistency(at_least_as_fresh="not-a-revision"))
        raise Mismatch("Check with a bad revision token: expected INVALID_ARGUMENT, got an answer")
    except grpc.RpcError as err:
        expect(err.code() == grpc.StatusCode.INVALID_ARGUMENT, "Check with a bad revision token: expected INVALID_ARGUMENT", err.code())
        # The server puts a google.rpc.Status with an ErrorInfo in the trailers.
        raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
        details, info = status_pb2.Status.FromString(raw).details if raw else [], error_details_pb2.ErrorInfo()
        expect(details and details[0].Unpack(info), "expected a google.rpc.ErrorInfo in grpc-status-details-bin", raw)
        out.append(f"Errors: a bad revision token is INVALID_ARGUMENT, ErrorInfo {info.domain}/{info.reason}")

    limits = rl_grpc.RateLimitServiceStub(channel)

    def consume(key):
        req = rl.ConsumeRateLimitRequest(policy="login-attempts", subject=common.SubjectRef(type="key", id=key), cost=1)
        return limits.ConsumeRateLimit(req, timeout=DEADLINE, metadata=md)

    key = f"python-client-{uuid.uuid4()}"
    first = consume(key)
    if seconds(first.reset_after) < 2:  # a fixed window is about to roll over: start in the next one
        time.sleep(seconds(first.reset_after) + 0.2)
        key = f"python-client-{uuid.uuid4()}"
        first = consume(key)
    answers = [first] + [consume(key) for _ in range(5)]
    got = [(a.allowed, a.remaining) for a in answers]
    expect(got[:5] == [(True, 4), (True, 3), (True, 2), (True, 1), (True, 0)], "ConsumeRateLimit: expected 5 allowed, remaining 4..0", got)
    last = answers[5]
    expect(not last.allowed and 0 < seconds(last.retry_after) <= 300 and last.policy == "login-attempts",
           "ConsumeRateLimit: expected the 6th denied with 0 < retry_after <= 300 s", last)
    out.append(f"ConsumeRateLimit: login-attempts allowed 5 of 6, then denied (retry after {seconds(last.retry_after):.1f} s)")
    return out


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTHZ_ADDR")
    if not addr:
        sys.exit("usage: authz_client.py HOST:PORT (or set AUTHZ_ADDR)")
    key = os.environ.get("AUTHZ_API_KEY")
    md = [("authorization", f"Bearer {key}")] if key else []
    try:
        with grpc.insecure_channel(addr) as channel:
            lines = run(channel, md)
    except Mismatch as m:
        print(f"authz_client: MISMATCH: {m}", file=sys.stderr)
        return 1
    except grpc.RpcError as err:
        print(f"authz_client: call to {addr} failed: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(f"OK: {len(lines)} checks passed against {addr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
