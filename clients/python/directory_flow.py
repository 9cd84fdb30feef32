#!/usr/bin/env python3
"""The directory flow of a calling service, through DirectoryService only:
sign-up, an organization with an avatar, an invitation accepted, Check
GRANTED, the user locked (Check SUBJECT_LOCKED), off-boarding (Check
SUBJECT_NOT_FOUND). Every step is read back through the directory reads.

    clients/python/generate.sh /tmp/authz-stubs
    PYTHONPATH=/tmp/authz-stubs /usr/bin/python3 clients/python/directory_flow.py 127.0.0.1:50051

The address comes from argv[1], else $AUTHZ_ADDR. With $AUTHZ_API_KEY set,
every call carries `authorization: Bearer <key>` (a key with the directory
or admin scope, plus check). The ids are fresh UUIDs, so the flow runs on
any database. On the first mismatch it prints why and exits with status 1.
"""
import os
import sys
import uuid

try:
    import grpc
    from authz.v1 import admin_service_pb2 as admin
    from authz.v1 import admin_service_pb2_grpc as admin_grpc
    from authz.v1 import common_pb2 as common
    from authz.v1 import directory_service_pb2 as d
    from authz.v1 import directory_service_pb2_grpc as d_grpc
    from authz.v1 import permission_service_pb2 as perm
    from authz.v1 import permission_service_pb2_grpc as perm_grpc
except ImportError as e:
    sys.exit(f"directory_flow: {e}: run with a Python that has grpc (Debian: /usr/bin/python3 with python3-grpcio)"
             " and PYTHONPATH set to the directory clients/python/generate.sh wrote")

DEADLINE = 5.0  # seconds, for every call


class Mismatch(Exception):
    pass


def expect(ok, what, got):
    if not ok:
        raise Mismatch(f"{what}; got: {str(got).strip() or '(empty)'}")


def fresh(revision):
    return common.Consistency(at_least_as_fresh=revision)


def new_id():
    return str(uuid.uuid4())


class Flow:
    def __init__(self, channel, md):
        self.dir = d_grpc.DirectoryServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)
        self.perm = perm_grpc.PermissionServiceStub(channel)
        self.md = md
        self.rev = "0"

    def write(self, *mutations):
        r = self.dir.ManageDirectory(d.ManageDirectoryRequest(mutations=list(mutations)), metadata=self.md, timeout=DEADLINE)
        self.rev = r.revision
        return r

    def read(self, method, **fields):
        return getattr(self.dir, method)(getattr(d, f"{method}Request")(consistency=fresh(self.rev), **fields), metadata=self.md, timeout=DEADLINE)

    def check(self, principal, permission, avatar):
        r = self.perm.Check(perm.CheckRequest(subject=common.SubjectRef(type="principal", id=principal), permission=permission,
                                              resource=common.ResourceRef(type="avatar", id=avatar), consistency=fresh(self.rev)),
                            metadata=self.md, timeout=DEADLINE)
        return perm.DecisionReason.Name(r.reason)


def sign_up(f, ids, out):
    user = d.UpsertUser(id=ids["user"], email="carol@example.com", email_confirmed=True, first_name="Carol", last_name="Danvers",
                        logical_key=f"user:{ids['user']}", has_password=True)
    user.properties.update({"locale": "en"})
    f.write(d.DirectoryMutation(upsert_user=user))
    got = f.read("GetUser", logical_key=f"user:{ids['user']}").user
    expect(got.id == ids["user"] and got.email == "carol@example.com" and got.properties["locale"] == "en" and got.enabled and not got.locked,
           "GetUser after sign-up", got)
    out.append(f"Sign-up: user {got.first_name} {got.last_name} <{got.email}> at revision {f.rev}")


def organization(f, ids, out):
    slug = f"org-{ids['org'][:8]}"
    f.write(
        d.DirectoryMutation(upsert_tenant=d.UpsertTenant(id=ids["tenant"], name="Carol Inc", slug=f"t-{ids['tenant'][:8]}")),
        d.DirectoryMutation(upsert_organization=d.UpsertOrganization(id=ids["org"], tenant_id=ids["tenant"], name="Carol Eng", slug=slug,
                                                                     role_structure="multi_role")),
        d.DirectoryMutation(upsert_account=d.UpsertAccount(id=ids["account"], organization_id=ids["org"], email="billing@example.com")),
        d.DirectoryMutation(upsert_staff=d.UpsertStaff(id=ids["staff"], logical_key=f"staff:{ids['staff']}")),
        d.DirectoryMutation(upsert_principal=d.UpsertPrincipal(id=ids["owner"], account_id=ids["account"],
                                                               subject=common.SubjectRef(type="staff", id=ids["staff"]))),
        d.DirectoryMutation(accept_principal=d.AcceptRecord(id=ids["owner"])),
        d.DirectoryMutation(upsert_principal=d.UpsertPrincipal(id=ids["principal"], account_id=ids["account"],
                                                               subject=common.SubjectRef(type="user", id=ids["user"]))),
        d.DirectoryMutation(accept_principal=d.AcceptRecord(id=ids["principal"])),
        d.DirectoryMutation(create_avatar=d.CreateAvatar(id=ids["avatar"], organization_id=ids["org"], handle="carol-bot",
                                                         owner_principal_id=ids["owner"])),
    )
    org = f.read("GetOrganization", tenant_id=ids["tenant"], slug=slug).organization
    expect(org.id == ids["org"] and org.role_structure == "multi_role", "GetOrganization by slug", org)
    av = f.read("GetAvatar", organization_id=ids["org"], handle="carol-bot")
    expect(av.avatar.id == ids["avatar"] and av.owner.principal_id == ids["owner"], "GetAvatar with its owner", av)
    # The permission members of an avatar get: granted to the built-in avatar_member role.
    r = f.admin.ManageRoles(admin.ManageRolesRequest(mutations=[
        admin.RoleMutation(upsert_permission=admin.UpsertPermission(key=admin.ScopedKey(key="avatar.post"))),
        admin.RoleMutation(grant_permission=admin.RolePermissionEdge(role=admin.RoleRef(key=admin.ScopedKey(key="avatar_member")),
                                                                     permission=admin.PermissionRef(key=admin.ScopedKey(key="avatar.post")))),
    ]), metadata=f.md, timeout=DEADLINE)
    f.rev = r.revision
    out.append(f"Organization: {org.name} ({org.slug}) with avatar {av.avatar.handle} owned by principal {av.owner.principal_id[:8]}")


def invite_and_accept(f, ids, out):
    r = f.write(d.DirectoryMutation(invite_membership=d.InviteMembership(avatar_id=ids["avatar"], principal_id=ids["principal"])))
    membership = r.results[0].id
    ms = f.read("ListMemberships", principal_id=ids["principal"]).memberships
    expect(len(ms) == 1 and ms[0].id == membership and not ms[0].HasField("accepted_at"), "ListMemberships: an open invitation", ms)
    before = f.check(ids["principal"], "avatar.post", ids["avatar"])
    expect(before == "DECISION_REASON_NO_GRANT", "Check before the invitation is accepted", before)
    f.write(d.DirectoryMutation(accept_membership=d.AcceptRecord(id=membership)))
    owner = f.read("ListMemberships", avatar_id=ids["avatar"])
    expect(len(owner.memberships) == 2 and owner.current_owner.principal_id == ids["owner"], "ListMemberships of the avatar", owner)
    granted = f.check(ids["principal"], "avatar.post", ids["avatar"])
    expect(granted == "DECISION_REASON_GRANTED", "Check after accept", granted)
    out.append(f"Invite: membership {membership[:8]} accepted -> Check {granted}")


def lock_and_off_board(f, ids, out):
    f.write(d.DirectoryMutation(set_user_status=d.SetUserStatus(user_id=ids["user"], locked=True)))
    expect(f.read("GetUser", id=ids["user"]).user.locked, "GetUser after lock", "")
    locked = f.check(ids["principal"], "avatar.post", ids["avatar"])
    expect(locked == "DECISION_REASON_SUBJECT_LOCKED", "Check after lock", locked)
    f.write(d.DirectoryMutation(delete_user=d.DeleteRecord(id=ids["user"])))
    try:
        f.read("GetUser", id=ids["user"])
        raise Mismatch("GetUser after off-boarding: expected NOT_FOUND")
    except grpc.RpcError as e:
        expect(e.code() == grpc.StatusCode.NOT_FOUND, "GetUser after off-boarding", e.code())
    left = f.read("ListPrincipals", account_id=ids["account"]).principals
    expect([p.id for p in left] == [ids["owner"]], "ListPrincipals after off-boarding: only the owner's", left)
    gone = f.check(ids["principal"], "avatar.post", ids["avatar"])
    expect(gone == "DECISION_REASON_SUBJECT_NOT_FOUND", "Check after off-boarding", gone)
    out.append(f"Lock: Check {locked}; off-boarding: GetUser NOT_FOUND, Check {gone}")


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTHZ_ADDR", "127.0.0.1:50051")
    key = os.environ.get("AUTHZ_API_KEY")
    md = [("authorization", f"Bearer {key}")] if key else []
    ids = {k: new_id() for k in ["user", "tenant", "org", "account", "staff", "owner", "principal", "avatar"]}
    out = []
    with grpc.insecure_channel(addr) as channel:
        f = Flow(channel, md)
        try:
            for step in (sign_up, organization, invite_and_accept, lock_and_off_board):
                step(f, ids, out)
        except Mismatch as e:
            print("\n".join(out))
            sys.exit(f"directory_flow: MISMATCH: {e}")
        except grpc.RpcError as e:
            print("\n".join(out))
            sys.exit(f"directory_flow: {e.code().name}: {e.details()}")
    print("\n".join(out))
    print(f"OK: directory flow passed against {addr}")


if __name__ == "__main__":
    main()
