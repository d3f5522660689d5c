"""mlxk.signing against the real ssh-keygen, with keys each test run makes (no mocks)."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mlxk import signing
from mlxk.errors import EXIT_SOURCE, EXIT_USER, MlxkError
from tests.support import ROOT

pytestmark = pytest.mark.unit  # ssh-keygen and ssh-agent come with openssh-client (setup.sh)

PASSPHRASE = "correct horse battery"  # only ever typed into ssh-keygen, never printed
LABEL = "bundle.tar:bundle.sig"
PAYLOAD = signing.signed_payload({"bundle.json": b"{}", "mlxk.lock": b"{}", "models.yaml": b"x"})


def keygen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh-keygen", *args], input=stdin, capture_output=True, check=True, timeout=30
    )


def make_key(path: Path, passphrase: str = "", kind: str = "ed25519") -> Path:
    keygen("-q", "-t", kind, "-N", passphrase, "-C", path.name, "-f", str(path))
    return path


def public(key: Path) -> str:
    """`keytype base64` of a key, as an allowed_signers line ends."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def fingerprint(key: Path) -> str:
    return keygen("-l", "-E", "sha256", "-f", f"{key}.pub").stdout.decode().split()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    return {
        "alice": make_key(d / "alice"),
        "mallory": make_key(d / "mallory"),
        "locked": make_key(d / "locked", PASSPHRASE),
        "rsa": make_key(d / "rsa", kind="rsa"),
    }


@pytest.fixture(autouse=True)
def _no_agent_no_gui(monkeypatch):
    """A developer's ssh-agent or askpass dialog must not change what these tests see."""
    for name in ("SSH_AUTH_SOCK", "DISPLAY", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def allowed(tmp_path, keys) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text(f'# site trust\nalice@example.com namespaces="mlxk" {public(keys["alice"])}\n')
    return path


@pytest.fixture
def signature(keys) -> bytes:
    return signing.sign(PAYLOAD, keys["alice"])


def refused(exit_code: int, names: list[str], call, *args, **kwargs) -> MlxkError:
    """call(*args) raises an MlxkError with exit_code and a one-line message naming every name."""
    with pytest.raises(MlxkError) as info:
        call(*args, **kwargs)
    err = info.value
    assert err.exit_code == exit_code, err.message
    assert "\n" not in err.message and "\n" not in (err.hint or ""), err.message
    for name in names:
        assert str(name) in err.message, err.message
    assert PASSPHRASE not in err.message + (err.hint or "")
    return err


# ---------------------------------------------------------------- the signed payload


def test_signed_payload_is_a_documented_sha256sum_listing():
    payload = signing.signed_payload({"mlxk.lock": b"lock", "bundle.json": b"index"})
    assert payload == (
        b"mlxk-bundle-signature v1\n"
        + hashlib.sha256(b"index").hexdigest().encode()
        + b"  bundle.json\n"
        + hashlib.sha256(b"lock").hexdigest().encode()
        + b"  mlxk.lock\n"
    )


def test_signed_payload_covers_every_member_and_name():
    base = {"bundle.json": b"{}", "mlxk.lock": b"L", "models.yaml": b"m"}
    payloads = {
        signing.signed_payload(base),
        signing.signed_payload({**base, "models.yaml": b"home: /etc\n"}),
        signing.signed_payload({**base, "mlxk.lock": b"L2"}),
        signing.signed_payload({"bundle.json": b"{}", "mlxk.lock": b"L", "other.yaml": b"m"}),
        signing.signed_payload({"bundle.json": b"{}", "mlxk.lock": b"L"}),
    }
    assert len(payloads) == 5
    assert signing.signed_payload(dict(reversed(base.items()))) == signing.signed_payload(base)
    for bad in ({}, {"a b": b""}, {"x\n": b""}, {"../x": b""}):
        with pytest.raises(ValueError):
            signing.signed_payload(bad)


# ---------------------------------------------------------------- sign and verify


def test_round_trip_names_the_signer_and_its_ssh_keygen_fingerprint(keys, allowed, signature):
    assert signature.startswith(b"-----BEGIN SSH SIGNATURE-----")
    signer = signing.verify(PAYLOAD, signature, allowed, label=LABEL)
    assert signer == signing.Signer("alice@example.com", fingerprint(keys["alice"]), "ssh-ed25519")
    assert signer.to_dict() == {
        "identity": "alice@example.com",
        "fingerprint": fingerprint(keys["alice"]),
        "key_type": "ssh-ed25519",
        "trusted": True,
    }
    assert signing.inspect(PAYLOAD, signature, label=LABEL) == signing.Signer(
        None, fingerprint(keys["alice"]), "ssh-ed25519"
    )


def test_ed25519_signatures_are_deterministic_so_bundles_stay_byte_identical(keys, signature):
    assert signing.sign(PAYLOAD, keys["alice"]) == signature


def test_other_key_types_and_multiple_principals(tmp_path, keys):
    allowed = tmp_path / "allowed"
    allowed.write_text(f'"ops@example.com,ci@example.com" {public(keys["rsa"])} build box\n')
    signer = signing.verify(PAYLOAD, signing.sign(PAYLOAD, keys["rsa"]), allowed)
    assert (signer.identity, signer.key_type) == ("ops@example.com", "ssh-rsa")
    assert signer.fingerprint == fingerprint(keys["rsa"])


def test_a_certificate_signed_by_a_trusted_ca(tmp_path, keys):
    ca, key = make_key(tmp_path / "ca"), tmp_path / "alice"
    for suffix in ("", ".pub"):
        shutil.copy(f"{keys['alice']}{suffix}", f"{key}{suffix}")
    keygen("-q", "-s", str(ca), "-I", "cert", "-n", "alice@example.com", f"{key}.pub")
    allowed = tmp_path / "allowed"
    allowed.write_text(f"*@example.com cert-authority {public(ca)}\n")
    signer = signing.verify(PAYLOAD, signing.sign(PAYLOAD, tmp_path / "alice-cert.pub"), allowed)
    assert signer.identity == "alice@example.com"
    assert signer.key_type == "ssh-ed25519-cert-v01@openssh.com"
    assert signer.fingerprint == fingerprint(keys["alice"])  # the key's, as ssh-keygen -l says


def test_payload_changed_after_signing_is_exit_3(allowed, signature):
    other = signing.signed_payload({"bundle.json": b"{}", "mlxk.lock": b"{ }", "models.yaml": b"x"})
    err = refused(EXIT_SOURCE, [LABEL], signing.verify, other, signature, allowed, label=LABEL)
    assert "incorrect signature" in err.message
    refused(EXIT_SOURCE, [LABEL], signing.inspect, other, signature, label=LABEL)


def test_a_key_the_allowed_signers_file_does_not_list_is_exit_3(keys, allowed):
    signature = signing.sign(PAYLOAD, keys["mallory"])
    names = [LABEL, allowed, fingerprint(keys["mallory"])]
    refused(EXIT_SOURCE, names, signing.verify, PAYLOAD, signature, allowed, label=LABEL)
    # inspect makes no trust decision: it names the key, and says nobody vouched for it
    assert signing.inspect(PAYLOAD, signature).to_dict()["trusted"] is False


def test_an_unsigned_bundle_is_exit_3_when_signers_are_required(allowed):
    err = refused(
        EXIT_SOURCE, [LABEL, allowed], signing.verify, PAYLOAD, None, allowed, label=LABEL
    )
    assert "not signed" in err.message


def armored(blob: bytes) -> bytes:
    import base64

    return b"-----BEGIN SSH SIGNATURE-----\n%s\n-----END SSH SIGNATURE-----\n" % (
        base64.b64encode(blob)
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"garbage\n",
        b"\xff\xfe not text",
        b"-----BEGIN PGP SIGNATURE-----\nAAAA\n-----END PGP SIGNATURE-----\n",
        b"-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
        armored(b"NOTSIG\x00\x00\x00\x01"),
        armored(b"SSHSIG\x00\x00\x00\x01\x00\x00\x00\xff"),
        b"x" * (1 << 20),
    ],
    ids=["empty", "text", "binary", "pgp", "base64", "magic", "truncated", "huge"],
)
def test_a_signature_that_is_not_an_ssh_signature_is_exit_3(allowed, garbage):
    err = refused(EXIT_SOURCE, [LABEL], signing.verify, PAYLOAD, garbage, allowed, label=LABEL)
    assert "not an SSH signature" in err.message
    refused(EXIT_SOURCE, [LABEL], signing.inspect, PAYLOAD, garbage, label=LABEL)


def test_a_truncated_real_signature_is_exit_3(allowed, signature):
    lines = signature.splitlines()
    cut = b"\n".join(lines[:2] + lines[-1:])
    refused(EXIT_SOURCE, [LABEL], signing.verify, PAYLOAD, cut, allowed, label=LABEL)


def test_a_signature_for_another_namespace_is_refused(tmp_path, keys, allowed):
    data = tmp_path / "payload"
    data.write_bytes(PAYLOAD)
    keygen("-Y", "sign", "-f", str(keys["alice"]), "-n", "git", str(data))
    git_sig = Path(f"{data}.sig").read_bytes()
    err = refused(EXIT_SOURCE, [LABEL], signing.verify, PAYLOAD, git_sig, allowed, label=LABEL)
    assert "'git'" in err.message and "'mlxk'" in err.message
    refused(EXIT_SOURCE, [LABEL], signing.inspect, PAYLOAD, git_sig, label=LABEL)


@pytest.mark.parametrize(
    "options, why",
    [('namespaces="git"', "namespace"), ('valid-before="20200101"', "expired")],
)
def test_allowed_signers_options_limit_a_key(tmp_path, keys, signature, options, why):
    allowed = tmp_path / "allowed"
    allowed.write_text(f"alice@example.com {options} {public(keys['alice'])}\n")
    err = refused(EXIT_SOURCE, [LABEL], signing.verify, PAYLOAD, signature, allowed, label=LABEL)
    assert why in err.message


# ---------------------------------------------------------------- the allowed_signers file


def test_allowed_signers_forms_ssh_keygen_accepts_are_accepted(tmp_path, keys, signature):
    alice, rsa = public(keys["alice"]), public(keys["rsa"])
    allowed = tmp_path / "allowed"
    allowed.write_bytes(
        (
            "# comment\n\n   \n"
            f"ops@example.com {rsa}\n"
            f'  "alice@example.com,a@x" NAMESPACES="mlxk",valid-after="20200101Z" {alice} c"m\r\n'
            f'*@ca.example.com cert-authority,valid-before="29991231235959" {rsa}'
        ).encode()
    )
    assert signing.check_allowed_signers(allowed) == 3
    assert signing.verify(PAYLOAD, signature, allowed).identity == "alice@example.com"


@pytest.mark.parametrize(
    "line, why",
    [
        ("alice@example.com", "no key"),
        ("alice@example.com ssh-ed25519", "not a ssh-ed25519 key"),
        ("alice@example.com ssh-ed25519 AAAA-not-base64", "not a ssh-ed25519 key"),
        ("alice@example.com ssh-rsa {alice_b64}", "not a ssh-rsa key"),
        ('alice@example.com foo="x" {alice}', "unsupported option"),
        ("alice@example.com namespaces=mlxk {alice}", "double-quoted"),
        ('alice@example.com valid-after="yesterday" {alice}', "YYYYMMDD"),
        ('alice@example.com namespaces="mlxk {alice}', "unbalanced"),
        ('alice@example.com cert-authority,,namespaces="mlxk" {alice}', "empty option"),
        (",alice@example.com {alice}", "principals"),
        (b"alice@example.com \xff {alice}", "UTF-8"),
    ],
)
def test_a_bad_allowed_signers_line_is_exit_2_naming_file_and_line(
    tmp_path, keys, signature, line, why
):
    alice = public(keys["alice"])
    if isinstance(line, bytes):
        line = line.replace(b"{alice}", alice.encode())
    else:
        line = line.format(alice=alice, alice_b64=alice.split()[1]).encode()
    allowed = tmp_path / "site_signers"
    allowed.write_bytes(b"# ok\n\nops@example.com " + alice.encode() + b"\n" + line + b"\n")
    err = refused(EXIT_USER, [f"{allowed}:4:"], signing.check_allowed_signers, allowed)
    assert why in err.message
    assert alice.split()[1] not in err.message  # the message names the line, not its key
    refused(EXIT_USER, [f"{allowed}:4:"], signing.verify, PAYLOAD, signature, allowed)


@pytest.mark.parametrize("content", [None, b"", b"# only comments\n\n"])
def test_a_missing_or_empty_allowed_signers_file_is_exit_2(tmp_path, signature, content):
    allowed = tmp_path / "nobody_signers"
    if content is not None:
        allowed.write_bytes(content)
    refused(EXIT_USER, [allowed], signing.verify, PAYLOAD, signature, allowed, label=LABEL)


# ---------------------------------------------------------------- bad signing keys


def test_a_missing_key_is_exit_2(tmp_path):
    refused(EXIT_USER, [tmp_path / "id_nope"], signing.sign, PAYLOAD, tmp_path / "id_nope")
    refused(EXIT_USER, [tmp_path], signing.sign, PAYLOAD, tmp_path)


def test_names_with_control_characters_stay_on_one_line(tmp_path, allowed):
    odd = tmp_path / "id\nsecond line"
    err = refused(EXIT_USER, [], signing.sign, PAYLOAD, odd)
    assert "second line" in err.message
    refused(
        EXIT_SOURCE, ["bundle\\n.sig"], signing.verify, PAYLOAD, b"x", allowed, label="bundle\n.sig"
    )


def test_a_file_that_is_not_a_key_is_exit_2(tmp_path, keys):
    junk = tmp_path / "id_junk"
    junk.write_text("not a key\n")
    refused(EXIT_USER, [junk], signing.sign, PAYLOAD, junk)
    lonely = tmp_path / "lonely.pub"  # a public key whose private half is nowhere
    shutil.copy(f"{keys['alice']}.pub", lonely)
    refused(EXIT_USER, [lonely], signing.sign, PAYLOAD, lonely)


def test_a_key_readable_by_others_is_exit_2_with_the_fix(tmp_path, keys):
    key = tmp_path / "open_key"
    shutil.copy(keys["alice"], key)
    key.chmod(0o644)
    err = refused(EXIT_USER, [key], signing.sign, PAYLOAD, key)
    assert err.hint == f"chmod 600 {key}"


def test_a_passphrase_key_fails_fast_without_a_terminal(keys):
    start = time.monotonic()
    err = refused(EXIT_USER, [keys["locked"]], signing.sign, PAYLOAD, keys["locked"])
    assert time.monotonic() - start < 5
    assert "passphrase" in err.message and "ssh-add" in err.hint


def test_a_passphrase_key_signs_when_asked_on_a_terminal(tmp_path, keys, allowed):
    """interactive=True: ssh-keygen asks on the controlling terminal (here a pty we type into)."""
    import pty

    master, slave = pty.openpty()
    child = signing_child(os.ttyname(slave), keys["locked"])
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        seen = read_until(master, b"passphrase", deadline=time.monotonic() + 20)
        assert b"passphrase" in seen.lower(), "ssh-keygen asked nothing on the terminal"
        os.write(master, PASSPHRASE.encode() + b"\n")
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err.decode()
    assert PASSPHRASE.encode() not in out + err
    allowed.write_text(f"ops@example.com {public(keys['locked'])}\n")
    assert signing.verify(PAYLOAD, out, allowed).fingerprint == fingerprint(keys["locked"])


def signing_child(tty: str, key: Path) -> str:
    """A python program that takes `tty` as its controlling terminal, then signs with key."""
    return (
        "import fcntl, os, sys, termios\n"
        f"fd = os.open({tty!r}, os.O_RDWR | os.O_NOCTTY)\n"
        "fcntl.ioctl(fd, termios.TIOCSCTTY, 0)\n"
        "from pathlib import Path\n"
        "from mlxk import signing\n"
        f"signature = signing.sign({PAYLOAD!r}, Path({str(key)!r}), interactive=True)\n"
        "sys.stdout.buffer.write(signature)\n"
    )


def read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen.lower() and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 1024)
            except OSError:
                break
    return seen


def test_a_public_key_signs_when_its_private_key_is_in_ssh_agent(
    tmp_path, keys, allowed, monkeypatch
):
    sock = Path(tempfile.mkdtemp(prefix="mlxk-agent-")) / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(keys["alice"])], check=True, capture_output=True)
        pub = tmp_path / "alice.pub"  # no private key beside it
        shutil.copy(f"{keys['alice']}.pub", pub)
        signature = signing.sign(PAYLOAD, pub)
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert signing.verify(PAYLOAD, signature, allowed).identity == "alice@example.com"


# ---------------------------------------------------------------- environment and clean-up


def test_nothing_is_left_in_the_temp_dir(tmp_path, keys, allowed, signature, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    signing.verify(PAYLOAD, signing.sign(PAYLOAD, keys["alice"]), allowed)
    signing.inspect(PAYLOAD, signature)
    with pytest.raises(MlxkError):
        signing.sign(PAYLOAD, keys["locked"])
    with pytest.raises(MlxkError):
        signing.verify(PAYLOAD + b"x", signature, allowed)
    with pytest.raises(MlxkError):
        signing.verify(PAYLOAD, signing.sign(PAYLOAD, keys["mallory"]), allowed)
    assert list(scratch.iterdir()) == []


def test_no_ssh_keygen_on_path_is_one_clear_error(tmp_path, keys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    err = refused(EXIT_SOURCE, ["ssh-keygen"], signing.sign, PAYLOAD, keys["alice"])
    assert "openssh" in err.hint.lower()
