"""SSH signatures over bytes, made and checked by the system `ssh-keygen -Y` (as git does).

    signed_payload(members)                  the exact bytes a bundle signature covers
    sign(payload, key)                       -> armored signature (`ssh-keygen -Y sign -n mlxk`)
    verify(payload, sig, allowed_signers)    -> Signer the allowed_signers file accepts, else exit 3
    inspect(payload, sig)                    -> Signer whose key made sig (no trust decision)
    check_allowed_signers(path)              a bad line is exit 2 naming file:line

Signatures use the SSH namespace "mlxk", so no signature made for git commits, files or e-mail
verifies here (nor one of ours there). Everything is offline: ssh-keygen never reaches a network.
Temporary files (the payload, the signature) live in a private temp dir removed on the way out;
key files are never copied or read here, only named to ssh-keygen. See docs/signing.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import IntegrityError, MlxkError, UserError

NAMESPACE = "mlxk"
SIGNATURE_NAME = "bundle.sig"  # the member of a bundle holding its signature
PAYLOAD_HEADER = "mlxk-bundle-signature v1"
TIMEOUT = 30.0  # seconds for one ssh-keygen run that cannot ask anybody anything

_BEGIN, _END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
_MAX_SIGNATURE = 64 * 1024
_MEMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_KEY_TYPE = re.compile(r"(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+")
_TIME = re.compile(r"\d{8}(\d{4}(\d{2})?)?[Zz]?")
_FINGERPRINT = re.compile(r"\bSHA256:[A-Za-z0-9+/]+")
_PROMPTERS = ("DISPLAY", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE")  # GUI passphrase dialogs
_SIGNERS_HINT = (
    "each line of an allowed_signers file is: principals [options] keytype base64-key "
    '(e.g. ops@example.com namespaces="mlxk" ssh-ed25519 AAAA...); see ALLOWED SIGNERS '
    "in `man ssh-keygen`"
)


@dataclass(frozen=True)
class Signer:
    """Who made a signature: the allowed_signers principal (None: not checked) and the key."""

    identity: str | None
    fingerprint: str  # "SHA256:<base64>", as `ssh-keygen -l` prints it
    key_type: str  # the key's SSH name, e.g. "ssh-ed25519"

    def to_dict(self) -> dict:
        return {
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "key_type": self.key_type,
            "trusted": self.identity is not None,
        }


@dataclass(frozen=True)
class _Signature:
    """The fields of an armored SSHSIG blob (PROTOCOL.sshsig in OpenSSH) that we look at."""

    key_type: str
    key_blob: bytes
    namespace: str


# ---------------------------------------------------------------- what is signed


def signed_payload(members: Mapping[str, bytes]) -> bytes:
    """The bytes a bundle signature covers: a header line, then `<sha256 hex>  <name>` per member,
    sorted by name (the format of `sha256sum`, so a site can rebuild it by hand):

        mlxk-bundle-signature v1
        3a7b...  bundle.json
        91c0...  mlxk.lock
        5e2d...  models.yaml
    """
    if not members:
        raise ValueError("signed_payload needs at least one member")
    lines = [PAYLOAD_HEADER]
    for name in sorted(members):
        if not _MEMBER.fullmatch(name):
            raise ValueError(f"signed_payload: bad member name {name!r}")
        lines.append(f"{hashlib.sha256(members[name]).hexdigest()}  {name}")
    return ("\n".join(lines) + "\n").encode("ascii")


# ---------------------------------------------------------------- running ssh-keygen


def _show(value) -> str:
    """A path or label as it goes in a one-line message (control characters escaped)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


def _one_line(stderr: bytes, skip: tuple[str, ...] = ()) -> str:
    """ssh-keygen's most telling stderr line: the last one not in `skip`, shortened."""
    lines = [" ".join(line.split()) for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not any(s in line for s in skip)]
    text = lines[-1] if lines else ""
    return _show(text if len(text) <= 200 else text[:197] + "...")


def _keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if not exe:
        raise MlxkError(
            "ssh-keygen not found on PATH; signing and checking bundles needs it",
            hint="install OpenSSH 8.2 or newer (Debian/Ubuntu: apt-get install openssh-client)",
        )
    return exe


def _run(
    args: list[str],
    stdin: bytes | None = None,
    *,
    timeout: float | None = TIMEOUT,
    interactive: bool = False,
    agent: bool = False,
) -> subprocess.CompletedProcess:
    """One ssh-keygen run. Unless interactive it has no terminal (own session, stdin closed or
    fed) and no GUI prompt, so a question it would ask fails at once instead of hanging."""
    from .settings import Settings

    env = Settings.from_env().child_env()
    if not interactive:
        for name in _PROMPTERS:
            env.pop(name, None)
    if not agent:
        env.pop("SSH_AUTH_SOCK", None)
    try:
        return subprocess.run(
            [_keygen(), *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=timeout,
            env=env,
            start_new_session=not interactive,
            check=False,
        )
    except OSError as e:
        raise MlxkError(f"cannot run ssh-keygen: {e.strerror}") from None


# ---------------------------------------------------------------- signing


def _check_key_file(key: Path) -> None:
    hint = "give an SSH private key such as ~/.ssh/id_ed25519 (made by `ssh-keygen -t ed25519`)"
    if not key.exists():
        raise UserError(f"{_show(key)}: no such signing key", hint=hint)
    if not key.is_file():
        raise UserError(f"{_show(key)}: not a file, so not a signing key", hint=hint)
    if not os.access(key, os.R_OK):
        raise UserError(f"{_show(key)}: cannot read the signing key (permission denied)", hint=hint)


def _sign_error(key: Path, stderr: bytes, returncode: int, interactive: bool) -> UserError:
    text, name = stderr.decode("utf-8", "replace"), _show(key)
    if "passphrase" in text and interactive:
        return UserError(f"{name}: the passphrase for the signing key was not accepted")
    if "passphrase" in text:
        return UserError(
            f"{name}: the signing key needs a passphrase, and this run cannot ask for one",
            hint="load it into ssh-agent (`ssh-add KEY`) and sign again, or sign in a terminal",
        )
    if "too open" in text:
        return UserError(
            f"{name}: the signing key is readable by others, so ssh-keygen refuses it",
            hint=f"chmod 600 {name}",
        )
    if "No private key found" in text or "load" in text.lower() or "invalid format" in text:
        return UserError(
            f"{name}: not an SSH private key (nor a public key whose private key is in ssh-agent)",
            hint="give the private key file, e.g. ~/.ssh/id_ed25519",
        )
    why = _one_line(stderr) or f"exit status {returncode}"
    return UserError(f"{name}: ssh-keygen could not sign: {why}")


def sign(
    payload: bytes, key: Path, *, interactive: bool = False, timeout: float = TIMEOUT
) -> bytes:
    """Sign payload with an SSH key (a private key file, or a .pub whose private half is in
    ssh-agent); returns the armored signature. interactive=True lets ssh-keygen ask for a
    passphrase on the terminal (no timeout); otherwise a key needing one is exit 2 at once."""
    key = Path(key).expanduser()
    _check_key_file(key)
    with tempfile.TemporaryDirectory(prefix="mlxk-sign-") as tmp:
        data = Path(tmp) / "payload"
        data.write_bytes(payload)
        args = ["-Y", "sign", "-f", os.path.abspath(key), "-n", NAMESPACE, str(data)]
        try:
            wait = None if interactive else timeout
            out = _run(args, timeout=wait, interactive=interactive, agent=True)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"{_show(key)}: ssh-keygen did not finish signing within {timeout:g} s",
                hint="a hardware (FIDO) key may be waiting for a touch; sign in a terminal",
            ) from None
        sig_file = data.with_name("payload.sig")
        if out.returncode != 0 or not sig_file.is_file():
            raise _sign_error(key, out.stderr, out.returncode, interactive)
        signature = sig_file.read_bytes()
    _parse_signature(signature, f"signature made with {_show(key)}")
    return signature


# ---------------------------------------------------------------- reading a signature


def _strings(blob: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    """`count` SSH wire strings (uint32 length, bytes) from blob at pos."""
    out = []
    for _ in range(count):
        if pos + 4 > len(blob):
            raise ValueError("truncated")
        (size,) = struct.unpack_from(">I", blob, pos)
        if pos + 4 + size > len(blob):
            raise ValueError("truncated")
        out.append(blob[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out, pos


def _decode_armor(data: bytes) -> bytes:
    if len(data) > _MAX_SIGNATURE:
        raise ValueError(f"{len(data)} bytes, larger than any SSH signature")
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("not ASCII text") from None
    if not text.startswith(_BEGIN) or not text.endswith(_END):
        raise ValueError(f"no {_BEGIN} armor")
    body = "".join(text[len(_BEGIN) : -len(_END)].split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise ValueError("bad base64 inside the armor") from None


def _parse_signature(data: bytes, label: str) -> _Signature:
    """The armored SSHSIG in data, else IntegrityError naming label."""
    try:
        blob = _decode_armor(data)
        if blob[:6] != b"SSHSIG" or blob[6:10] != b"\x00\x00\x00\x01":
            raise ValueError("not an SSHSIG version 1 blob")
        (key_blob, namespace, _reserved, _hash_alg, _sig), end = _strings(blob, 10, 5)
        if end != len(blob):
            raise ValueError("trailing bytes")
        key_type = _strings(key_blob, 0, 1)[0][0].decode("ascii")
        if not _KEY_TYPE.fullmatch(key_type):
            raise ValueError("unknown key type")
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(
            f"{_show(label)}: not an SSH signature ({e})",
            hint="a bundle signature is written by `mlxk bundle --sign`; get a good copy",
        ) from None
    return _Signature(key_type, key_blob, namespace.decode("utf-8", "backslashreplace"))


def _check_namespace(sig: _Signature, label: str) -> None:
    if sig.namespace != NAMESPACE:
        raise IntegrityError(
            f"{_show(label)}: signed for namespace {sig.namespace!r}, not {NAMESPACE!r}",
            hint="only `mlxk bundle --sign` signatures (ssh-keygen -Y sign -n mlxk) count here",
        )


def _fingerprint(sig: _Signature, label: str) -> str:
    """SHA256 fingerprint of the signing key exactly as `ssh-keygen -l` gives it."""
    line = f"{sig.key_type} {base64.b64encode(sig.key_blob).decode()}\n".encode()
    out = _run(["-l", "-E", "sha256", "-f", "-"], line)
    found = _FINGERPRINT.search(out.stdout.decode("ascii", "replace"))
    if out.returncode != 0 or not found:
        raise IntegrityError(
            f"{_show(label)}: the signature's {sig.key_type} public key is not valid "
            f"({_one_line(out.stderr) or 'ssh-keygen -l failed'})"
        )
    return found.group(0)


# ---------------------------------------------------------------- allowed_signers


class _BadLine(ValueError):
    pass


def _field(line: str, pos: int) -> tuple[str, int]:
    """The next whitespace-separated field from pos (a double-quoted run may hold spaces)."""
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    start, quoted = pos, False
    while pos < len(line) and (quoted or line[pos] not in " \t"):
        quoted ^= line[pos] == '"'
        pos += 1
    if quoted:
        raise _BadLine("unbalanced double quote")
    return line[start:pos], pos


def _is_key(key_type: str, b64: str) -> bool:
    try:
        blob = base64.b64decode(b64, validate=True)
        return _strings(blob, 0, 1)[0][0] == key_type.encode()
    except (binascii.Error, ValueError):
        return False


def _check_options(options: str) -> None:
    for opt in re.findall(r'(?:[^,"]|"[^"]*")+', options):
        name, eq, value = opt.partition("=")
        name = name.lower()
        if name == "cert-authority" and not eq:
            continue
        if name not in ("namespaces", "valid-after", "valid-before") or not eq:
            raise _BadLine(f"unsupported option {_show(opt[:40])}")
        if len(value) < 3 or value[0] != '"' or value[-1] != '"':
            raise _BadLine(f'{name} needs a non-empty double-quoted value, e.g. {name}="..."')
        if name != "namespaces" and not _TIME.fullmatch(value[1:-1]):
            raise _BadLine(f"{name} is not a YYYYMMDD[HHMM[SS]][Z] time")
    if options.startswith(",") or options.endswith(",") or ",," in options:
        raise _BadLine("empty option")


def _check_line(line: str) -> None:
    """Raise _BadLine unless line is `principals [options] keytype base64 [comment]`."""
    principals, pos = _field(line, 0)
    second, pos = _field(line, pos)
    third, pos = _field(line, pos)
    if not second:
        raise _BadLine("no key after the principals")
    if _KEY_TYPE.fullmatch(second):
        if not _is_key(second, third):
            raise _BadLine(f"the base64 key is missing or is not a {second} key")
    else:
        fourth, _ = _field(line, pos)
        if not _KEY_TYPE.fullmatch(third) or not _is_key(third, fourth):
            raise _BadLine("no valid keytype and base64 key after the options")
        _check_options(second)
    names = principals[1:-1] if principals[:1] == principals[-1:] == '"' else principals
    if '"' in names or not all(names.split(",")):
        raise _BadLine("bad principals (comma-separated user@domain patterns)")


def check_allowed_signers(path: Path) -> int:
    """Check every line of an allowed_signers file; returns how many signer lines it has.
    A missing or unreadable file, a bad line (named as file:line) or no signers: UserError."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"{_show(path)}: no such allowed_signers file", hint=_SIGNERS_HINT
        ) from None
    except OSError as e:
        raise UserError(
            f"{_show(path)}: cannot read the allowed_signers file ({e.strerror})"
        ) from None
    count = 0
    for number, data in enumerate(raw.split(b"\n"), 1):
        try:
            line = data.decode("utf-8").rstrip("\r").strip(" \t")
            if not line or line.startswith("#"):
                continue
            _check_line(line)
        except (UnicodeDecodeError, _BadLine) as e:
            why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
            raise UserError(
                f"{_show(path)}:{number}: bad allowed_signers line: {why}", hint=_SIGNERS_HINT
            ) from None
        count += 1
    if not count:
        raise UserError(
            f"{_show(path)}: the allowed_signers file lists no signers", hint=_SIGNERS_HINT
        )
    return count


# ---------------------------------------------------------------- verifying


def _principals(sig_file: Path, allowed: Path) -> tuple[list[str], str]:
    """The principals allowed_signers lists for the signature's key, and why none if none."""
    out = _run(["-Y", "find-principals", "-s", str(sig_file), "-f", os.path.abspath(allowed)])
    names: list[str] = []
    for line in out.stdout.decode("utf-8", "replace").splitlines() if out.returncode == 0 else ():
        names += [n.strip() for n in line.split(",") if n.strip() and n.strip() not in names]
    return names, _one_line(out.stderr, skip=("No principal matched", ": missing key"))


def _accept(payload: bytes, sig: _Signature, sig_file: Path, allowed: Path, label: str) -> Signer:
    """The first principal for the signature's key that ssh-keygen -Y verify accepts."""
    fingerprint = _fingerprint(sig, label)
    names, why = _principals(sig_file, allowed)
    if not names:
        raise IntegrityError(
            f"{_show(label)}: signed by {sig.key_type} key {fingerprint}, which "
            f"{_show(allowed)} does not allow" + (f" ({why})" if why else ""),
            hint="if you trust this key, add its public key to the allowed_signers file",
        )
    reason = ""
    for name in names:
        args = ["-Y", "verify", "-f", os.path.abspath(allowed), "-I", name, "-n", NAMESPACE]
        out = _run([*args, "-s", str(sig_file)], payload)
        if out.returncode == 0:
            return Signer(name, fingerprint, sig.key_type)
        reason = reason or _one_line(out.stderr)
    raise IntegrityError(
        f"{_show(label)}: ssh-keygen rejects the signature by {_show(names[0])} "
        f"({fingerprint}): {reason or 'ssh-keygen -Y verify failed'}",
        hint="the signed lock, index or manifest changed after signing, or the allowed_signers "
        "line limits the key (namespaces=, valid-after=, valid-before=)",
    )


def _timeout(label: str) -> IntegrityError:
    return IntegrityError(
        f"{_show(label)}: ssh-keygen did not finish checking within {TIMEOUT:g} s"
    )


def verify(
    payload: bytes, signature: bytes | None, allowed_signers: Path, *, label: str = "signature"
) -> Signer:
    """The Signer whose signature over payload the allowed_signers file accepts. A bad file is
    UserError (exit 2); no signature (None), not an SSH signature, another namespace, a key the
    file does not list (or not now), or a payload changed after signing: IntegrityError (3)."""
    allowed = Path(allowed_signers).expanduser()
    check_allowed_signers(allowed)
    if signature is None:
        raise IntegrityError(
            f"{_show(label)}: missing; the bundle is not signed, and {_show(allowed)} "
            "requires a signature",
            hint="ask for a bundle made with `mlxk bundle --sign KEY`",
        )
    sig = _parse_signature(signature, label)
    _check_namespace(sig, label)
    with tempfile.TemporaryDirectory(prefix="mlxk-verify-") as tmp:
        sig_file = Path(tmp) / "signature"
        sig_file.write_bytes(signature)
        try:
            return _accept(payload, sig, sig_file, allowed, label)
        except subprocess.TimeoutExpired:
            raise _timeout(label) from None


def inspect(payload: bytes, signature: bytes, *, label: str = "signature") -> Signer:
    """The key that made signature over payload (identity None: nobody's trust was asked).
    A signature that is malformed, for another namespace, or not over payload: IntegrityError."""
    sig = _parse_signature(signature, label)
    _check_namespace(sig, label)
    with tempfile.TemporaryDirectory(prefix="mlxk-inspect-") as tmp:
        sig_file = Path(tmp) / "signature"
        sig_file.write_bytes(signature)
        try:
            fingerprint = _fingerprint(sig, label)
            args = ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig_file)]
            out = _run(args, payload)
        except subprocess.TimeoutExpired:
            raise _timeout(label) from None
    if out.returncode != 0:
        raise IntegrityError(
            f"{_show(label)}: the signature ({fingerprint}) does not match this content "
            f"({_one_line(out.stderr) or 'ssh-keygen -Y check-novalidate failed'})",
            hint="the signed lock, index or manifest changed after signing",
        )
    return Signer(None, fingerprint, sig.key_type)
