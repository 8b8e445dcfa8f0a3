"""SASL DIGEST-MD5 logins, after kazoo's upstream test_sasl.py, against both servers: run.py
gives both the same JAAS file (users jaasuser and super; super is the super user once logged
in). A client logged in holds `sasl:<user>` for ACLs; bad credentials are AuthFailed.
"""

import json
import os
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.security import make_acl, make_digest_acl

from conftest import HOSTS, wait_until

with open(os.environ["ZK_SASL_USERS"]) as f:
    USERS = json.load(f)


def sasl_client(username, password, hosts=HOSTS, **kw):
    return KazooClient(
        hosts=hosts,
        timeout=10.0,
        sasl_options={"mechanism": "DIGEST-MD5", "username": username, "password": password},
        **kw,
    )


def started(client):
    client.start(timeout=15)
    return client


def closing(*clients):
    for c in clients:
        c.stop()
        c.close()


def test_a_sasl_login_holds_its_acls():
    path = f"/sasl-{uuid.uuid4().hex}"
    acl = make_acl("sasl", credential="jaasuser", all=True)
    owner = started(sasl_client("jaasuser", USERS["jaasuser"]))
    anonymous = started(KazooClient(hosts=HOSTS, timeout=10.0))
    try:
        owner.create(path, b"secret", acl=(acl,))
        assert owner.get(path)[0] == b"secret"
        with pytest.raises(NoAuthError):
            anonymous.get(path)
        # The same user logged in again, through another member.
        again = started(sasl_client("jaasuser", USERS["jaasuser"], hosts=HOSTS.split(",")[-1]))
        try:
            assert again.get(path)[0] == b"secret"
            assert again.get_acls(path)[0] == [acl]
        finally:
            closing(again)
    finally:
        owner.delete(path)
        closing(owner, anonymous)


def test_the_legacy_auth_data_form_logs_in_too():
    # kazoo turns auth_data=[("sasl", "user:password")] into DIGEST-MD5 (deprecated form).
    path = f"/sasl-legacy-{uuid.uuid4().hex}"
    acl = make_acl("sasl", credential="jaasuser", all=True)
    with pytest.warns(DeprecationWarning):
        client = KazooClient(
            hosts=HOSTS, timeout=10.0, auth_data=[("sasl", f"jaasuser:{USERS['jaasuser']}")]
        )
    started(client)
    try:
        client.create(path, b"x", acl=(acl,))
        assert client.get(path)[0] == b"x"
        client.delete(path)
    finally:
        closing(client)


def test_the_auth_scheme_takes_the_sasl_identity():
    path = f"/sasl-auth-{uuid.uuid4().hex}"
    client = started(sasl_client("jaasuser", USERS["jaasuser"]))
    try:
        client.create(path, b"x", acl=(make_acl("auth", "", all=True),))
        assert client.get_acls(path)[0] == [make_acl("sasl", credential="jaasuser", all=True)]
        client.delete(path)
    finally:
        closing(client)


def test_the_sasl_super_user_passes_every_acl():
    path = f"/sasl-super-{uuid.uuid4().hex}"
    owner = started(KazooClient(hosts=HOSTS, timeout=10.0))
    owner.add_auth("digest", "owner:pw")
    root = started(sasl_client("super", USERS["super"]))
    try:
        owner.create(path, b"mine", acl=(make_digest_acl("owner", "pw", all=True),))
        assert root.get(path)[0] == b"mine"
        root.delete(path)
    finally:
        closing(owner, root)


@pytest.mark.parametrize(
    "username,password",
    [("jaasuser", "wrong-password"), ("baduser", "badpassword")],
)
def test_bad_credentials_are_auth_failed(username, password):
    states = []
    client = sasl_client(username, password)
    client.add_listener(lambda s: states.append(s))
    try:
        try:
            client.start(timeout=5)
        except (AuthFailedError, KazooTimeoutError):
            return  # refused before start() returned
        # kazoo reports CONNECTED before it logs in: the refusal comes right after, and
        # kazoo gives the session up (AUTH_FAILED, then LOST).
        wait_until(lambda: KazooState.LOST in states, what="the session to be lost")
        assert not client.connected
    finally:
        closing(client)


@pytest.mark.skipif(not os.environ.get("ZK_SECURE_HOSTS"), reason="no TLS ports with --serve")
def test_a_sasl_login_over_tls():
    tls_dir = os.environ["ZK_TLS_DIR"]
    client = sasl_client(
        "jaasuser",
        USERS["jaasuser"],
        hosts=os.environ["ZK_SECURE_HOSTS"],
        use_ssl=True,
        verify_certs=True,
        ca=os.path.join(tls_dir, "ca.pem"),
        certfile=os.path.join(tls_dir, "client.pem"),
        keyfile=os.path.join(tls_dir, "client-key.pem"),
    )
    path = f"/sasl-tls-{uuid.uuid4().hex}"
    started(client)
    try:
        client.create(path, b"x", acl=(make_acl("sasl", credential="jaasuser", all=True),))
        assert client.get(path)[0] == b"x"
        client.delete(path)
    finally:
        closing(client)
