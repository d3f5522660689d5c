"""Issue #16: an isolated site's own lock decides what a bundle may bring; replacing it is
explicit; bundles can be signed (real ssh-keygen keys made here) and checked before any blob
enters the store; verify --bundle checks a bundle against the local lock. Plain `path:`
sources, no steps: no hub, no mlx."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.support import write_manifest

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs OpenSSH's ssh-keygen"),
]

A, B, X = b"A" * 3000, b"B" * 2000, b"X" * 1000
EIGHT, FOUR = b"8-bit weights " * 300, b"4-bit weights " * 150
SITE_COMMENT = "# reviewed by the site: the 8-bit build, nothing else\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_key(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path


def fingerprint(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], capture_output=True, check=True
    )
    return out.stdout.decode().split()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    return {name: make_key(d / name) for name in ("alice", "mallory")} | {
        "locked": make_key(d / "locked", "a passphrase")
    }


@pytest.fixture(autouse=True)
def _no_agent_no_gui(monkeypatch):
    for name in ("SSH_AUTH_SOCK", "DISPLAY", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"):
        monkeypatch.delenv(name, raising=False)


def signers(path: Path, *named: tuple[str, Path]) -> Path:
    """An allowed_signers file listing each (principal, key)."""
    lines = [
        f'{who} namespaces="mlxk" {Path(f"{key}.pub").read_text().split()[0]} '
        f"{Path(f'{key}.pub').read_text().split()[1]}"
        for who, key in named
    ]
    path.write_text("# who may sign bundles for this site\n" + "\n".join(lines) + "\n")
    return path


def project(root: Path, workspaces: dict[str, dict[str, bytes]], head: str = "") -> Path:
    """A project whose workspaces are local directories src-<name>/ of files."""
    body = head + "version: 1\nworkspaces:\n"
    for name, files in workspaces.items():
        src = root / f"src-{name}"
        src.mkdir(parents=True)
        for fname, data in files.items():
            (src / fname).write_bytes(data)
        body += f"  {name}:\n    source: path:src-{name}\n"
    return write_manifest(root, body)


@pytest.fixture
def connected(tmp_path, mlxk, monkeypatch, keys):
    """make(name, workspaces, sign=None, tar=True) -> a bundle written on a connected machine
    (its own store); the tests then run as the isolated site (MLXK_STORE=<tmp>/store)."""

    def make(name: str, workspaces: dict, sign: str | None = None, tar: bool = True) -> Path:
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / "connected-store"))
        m = project(tmp_path / f"connected-{name}", workspaces)
        assert mlxk("sync", "-f", str(m)).exit_code == 0
        out = tmp_path / "transfer" / (f"{name}.tar" if tar else name)
        args = ["--sign", str(keys[sign])] if sign else []
        res = mlxk("bundle", "-f", str(m), str(out), *args, "--json")
        assert res.exit_code == 0, res
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store"))
        return out

    return make


@pytest.fixture
def site(tmp_path, mlxk, monkeypatch):
    """An isolated site's reviewed models.yaml (with a comment) and mlxk.lock for workspace
    `w`; locked where its source was, then the source is gone and the store is empty."""

    def make(files: dict[str, bytes], head: str = SITE_COMMENT) -> Path:
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / "locking-store"))
        m = project(tmp_path / "site", {"w": files}, head)
        assert mlxk("lock", "-f", str(m)).exit_code == 0
        shutil.rmtree(tmp_path / "site" / "src-w")
        monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store"))
        return m

    return make


def files_of(m: Path) -> dict[str, bytes]:
    return {name: m.with_name(name).read_bytes() for name in (m.name, "mlxk.lock")}


def store_blobs(store: Path) -> set[str]:
    root = store / "blobs" / "sha256"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


# ---------------------------------------------------------------- 1. the local lock decides


def test_import_keeps_the_local_lock_and_takes_only_the_blobs_it_names(
    tmp_path, mlxk, connected, site
):
    bundle = connected("big", {"w": {"a.bin": A, "b.bin": B}, "x": {"x.bin": X}})
    m = site({"a.bin": A})
    before = files_of(m)
    res = mlxk("import", "-f", str(m), str(bundle), "--json")
    assert res.exit_code == 0, res
    data = res.json["data"]
    assert (data["action"], data["written"], data["blobs"]) == ("kept", [], 1)
    assert (data["extra_blobs"], data["stored"], data["workspaces"]) == (2, 0, ["w"])
    assert files_of(m) == before  # the comment, the manifest, the lock: byte for byte
    assert store_blobs(tmp_path / "store") == {sha(A)}  # nothing the local lock does not name
    changes = {c["workspace"]: c for c in data["changes"]}
    assert changes["x"]["change"] == "added" and changes["x"]["before"] is None
    assert changes["w"]["change"] == "changed" and changes["w"]["differs"] == ["content_hash"]
    assert changes["w"]["before"]["content_hash"] != changes["w"]["after"]["content_hash"]
    text = mlxk("import", "-f", str(m), str(bundle)).stdout
    assert "kept models.yaml and mlxk.lock: the local lock decides" in text
    assert "the local lock was kept" in text and "~ w: content hash sha256:" in text
    assert "+ x: path:src-x (only in the bundle's lock)" in text
    res = mlxk("sync", "-f", str(m), "--offline", "--frozen", "--json")
    assert res.exit_code == 0, res
    assert mlxk("verify", "-f", str(m)).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "site" / "models" / "w").iterdir()) == [
        ".mlxk_workspace.json",
        "a.bin",
    ]


def test_sync_from_a_foreign_bundle_keeps_the_local_manifest_and_switches_nothing(
    tmp_path, mlxk, connected, site
):
    """The issue's case: a local manifest for an 8-bit build, a bundle of a 4-bit one."""
    bundle = connected("four", {"w": {"weights.bin": FOUR}})
    m = site({"weights.bin": EIGHT})
    before = files_of(m)
    res = mlxk("sync", "--offline", "--from", str(bundle), "-f", str(m), "--json")
    assert res.exit_code == 3 and res.json["error"]["type"] == "source_error", res
    message = res.json["error"]["message"]
    assert message.startswith("import: the local mlxk.lock needs 1 blob(s) that neither")
    assert f"w/weights.bin ({sha(EIGHT)[:12]})" in message and str(bundle) in message
    assert "\n" not in message
    assert files_of(m) == before and SITE_COMMENT in m.read_text()
    assert not (tmp_path / "site" / "models").exists()  # nothing switched
    assert store_blobs(tmp_path / "store") == set()  # and not one blob taken
    res = mlxk("import", str(bundle), "-f", str(m))
    assert res.exit_code == 3 and "w/weights.bin" in res.stderr


def test_a_blob_the_store_already_has_need_not_be_in_the_bundle(tmp_path, mlxk, connected, site):
    bundle = connected("b-only", {"w": {"b.bin": B}})
    m = site({"a.bin": A, "b.bin": B})
    # the store already holds a.bin (an earlier import, say)
    earlier = connected("a-only", {"w": {"a.bin": A}})
    tmp = tmp_path / "elsewhere"
    tmp.mkdir()
    assert mlxk("import", "-f", str(tmp / "models.yaml"), str(earlier)).exit_code == 0
    res = mlxk("sync", "--offline", "--frozen", "--from", str(bundle), "-f", str(m), "--json")
    assert res.exit_code == 0, res
    imported = res.json["data"]["import"]
    assert (imported["action"], imported["blobs"], imported["stored"]) == ("kept", 1, 1)
    assert [w["name"] for w in res.json["data"]["workspaces"]] == ["w"]
    assert mlxk("verify", "-f", str(m)).exit_code == 0


# ---------------------------------------------------------------- 2. replacing is explicit


@pytest.mark.parametrize("how", ["import", "sync"])
def test_force_replaces_the_manifest_and_lock_and_shows_the_difference(
    tmp_path, mlxk, connected, site, how
):
    bundle = connected("four", {"w": {"weights.bin": FOUR}, "extra": {"x.bin": X}})
    m = site({"weights.bin": EIGHT})
    if how == "import":
        args = ["import", str(bundle), "-f", str(m), "--force"]
    else:
        args = ["sync", "--offline", "--from", str(bundle), "--force", "-f", str(m)]
    res = mlxk(*args, "--json")
    assert res.exit_code == 0, res
    data = res.json["data"] if how == "import" else res.json["data"]["import"]
    assert data["action"] == "replaced" and data["written"] == ["models.yaml", "mlxk.lock"]
    with tarfile.open(bundle) as tar:
        assert m.read_bytes() == tar.extractfile("models.yaml").read()
        assert m.with_name("mlxk.lock").read_bytes() == tar.extractfile("mlxk.lock").read()
    changes = {c["workspace"]: (c["change"], c["differs"]) for c in data["changes"]}
    assert changes == {"extra": ("added", []), "w": ("changed", ["content_hash"])}
    text = mlxk(*args).stdout  # once more: now the same files, nothing to write
    assert "replaced with the bundle's (--force): nothing (the files were the same)" in text


def test_first_provisioning_writes_the_bundles_manifest_and_lock_and_says_so(
    tmp_path, mlxk, connected, monkeypatch
):
    bundle = connected("four", {"w": {"weights.bin": FOUR}})
    dest = tmp_path / "fresh"
    dest.mkdir()
    monkeypatch.chdir(dest)
    res = mlxk("import", str(bundle))
    assert res.exit_code == 0, res
    assert "Wrote models.yaml and mlxk.lock from the bundle" in res.stdout
    res = mlxk("import", str(bundle), "--json")  # again: the files are now the site's own
    assert res.json["data"]["action"] == "kept" and res.json["data"]["changes"] == []


def test_a_manifest_without_a_lock_or_a_lock_without_a_manifest_needs_force(
    tmp_path, mlxk, connected
):
    bundle = connected("four", {"w": {"weights.bin": FOUR}})
    dest = tmp_path / "half"
    m = project(dest, {"w": {"weights.bin": EIGHT}}, SITE_COMMENT)
    res = mlxk("import", str(bundle), "-f", str(m))
    assert res.exit_code == 2 and "models.yaml has no mlxk.lock beside it" in res.stderr
    with tarfile.open(bundle) as tar:  # the same manifest, not yet locked: the lock pins it
        m.write_bytes(tar.extractfile("models.yaml").read())
    res = mlxk("import", str(bundle), "-f", str(m), "--json")
    assert res.exit_code == 0 and res.json["data"]["written"] == ["mlxk.lock"], res
    m.unlink()
    res = mlxk("import", str(bundle), "-f", str(m))
    assert res.exit_code == 2 and "mlxk.lock is here but models.yaml is not" in res.stderr
    assert not m.exists()


def test_force_and_allowed_signers_go_with_from(tmp_path, mlxk, site):
    m = site({"a.bin": A})
    assert mlxk("sync", "-f", str(m), "--force").exit_code == 2
    assert mlxk("sync", "-f", str(m), "--allowed-signers", "x").exit_code == 2
    assert mlxk("verify", "-f", str(m), "--allowed-signers", "x").exit_code == 2


# ---------------------------------------------------------------- 3. signed bundles


def test_a_signed_bundle_carries_bundle_sig_outside_its_index_and_stays_deterministic(
    tmp_path, mlxk, connected, keys, monkeypatch
):
    out = connected("signed", {"w": {"a.bin": A}}, sign="alice")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("bundle.json").read())
    assert "bundle.sig" in names and "bundle.sig" not in json.dumps(index)
    again = tmp_path / "again.tar"
    m = tmp_path / "connected-signed" / "models.yaml"
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "connected-store"))
    res = mlxk("bundle", "-f", str(m), str(again), "--sign", str(keys["alice"]), "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["signature"] == {
        "member": "bundle.sig",
        "identity": None,
        "fingerprint": fingerprint(keys["alice"]),
        "key_type": "ssh-ed25519",
        "trusted": False,
        "allowed_signers": None,
    }
    assert again.read_bytes() == out.read_bytes()  # ed25519 signatures are deterministic
    directory = connected("signed-dir", {"w": {"a.bin": A}}, sign="alice", tar=False)
    assert (directory / "bundle.sig").read_bytes().startswith(b"-----BEGIN SSH SIGNATURE")


def test_import_with_allowed_signers_takes_only_a_trusted_signed_bundle(
    tmp_path, mlxk, connected, site, keys
):
    allowed = signers(tmp_path / "site_signers", ("ops@example.com", keys["alice"]))
    unsigned = connected("unsigned", {"w": {"a.bin": A}})
    foreign = connected("foreign", {"w": {"a.bin": A}}, sign="mallory")
    good = connected("good", {"w": {"a.bin": A}}, sign="alice")
    m = site({"a.bin": A})
    before = files_of(m)
    for bundle, needle in (
        (unsigned, "the bundle is not signed"),
        (foreign, f"signed by ssh-ed25519 key {fingerprint(keys['mallory'])}, which"),
    ):
        res = mlxk("import", str(bundle), "-f", str(m), "--allowed-signers", str(allowed))
        assert res.exit_code == 3, res
        assert needle in res.stderr and f"{bundle}:bundle.sig" in res.stderr
        assert store_blobs(tmp_path / "store") == set() and files_of(m) == before
    res = mlxk("import", str(good), "-f", str(m), "--allowed-signers", str(allowed), "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["signature"] == {
        "member": "bundle.sig",
        "identity": "ops@example.com",
        "fingerprint": fingerprint(keys["alice"]),
        "key_type": "ssh-ed25519",
        "trusted": True,
        "allowed_signers": str(allowed),
    }
    res = mlxk("import", str(good), "-f", str(m), "--allowed-signers", str(allowed))
    assert f"signed by ops@example.com (ssh-ed25519 key {fingerprint(keys['alice'])})" in (
        res.stdout
    )


@pytest.mark.parametrize("member", ["mlxk.lock", "models.yaml", "bundle.json"])
def test_a_signed_bundle_changed_after_signing_is_refused_before_any_blob(
    tmp_path, mlxk, connected, keys, member
):
    allowed = signers(tmp_path / "site_signers", ("ops@example.com", keys["alice"]))
    bundle = connected("signed", {"w": {"a.bin": A}}, sign="alice", tar=False)
    target = bundle / member
    target.chmod(0o644)
    if member == "mlxk.lock":  # the same lock, re-spaced; the index updated to match
        target.write_text(json.dumps(json.loads(target.read_text()), indent=1))
        index = json.loads((bundle / "bundle.json").read_text())
        index["lock_sha256"] = sha(target.read_bytes())
        (bundle / "bundle.json").chmod(0o644)
        (bundle / "bundle.json").write_text(json.dumps(index))
    elif member == "models.yaml":
        target.write_text(target.read_text() + "home: elsewhere\n")
    else:
        target.write_text(json.dumps(json.loads(target.read_text()), indent=2))
    dest = tmp_path / "dest"
    dest.mkdir()
    args = ("import", str(bundle), "-f", str(dest / "models.yaml"))
    res = mlxk(*args, "--allowed-signers", str(allowed), "--json")
    assert res.exit_code == 3 and "incorrect signature" in res.json["error"]["message"], res
    assert list(dest.iterdir()) == [] and store_blobs(tmp_path / "store") == set()
    res = mlxk(*args, "--json")  # unchecked, a signature that does not fit is still refused
    assert res.exit_code == 3 and "does not match this content" in res.json["error"]["message"]


def test_the_allowed_signers_file_comes_from_env_then_the_sites_manifest_never_the_bundles(
    tmp_path, mlxk, connected, site, keys, monkeypatch
):
    unsigned = connected("unsigned", {"w": {"a.bin": A}})
    good = connected("good", {"w": {"a.bin": A}}, sign="alice")
    m = site({"a.bin": A}, head="allowed_signers: signers\n")
    allowed = signers(tmp_path / "site" / "signers", ("ops@example.com", keys["alice"]))
    assert allowed.parent == m.parent
    res = mlxk("import", str(unsigned), "-f", str(m))
    assert res.exit_code == 3 and "not signed" in res.stderr, res
    res = mlxk("sync", "--offline", "--from", str(good), "-f", str(m), "--json")
    assert res.exit_code == 0, res
    assert res.json["data"]["import"]["signature"]["identity"] == "ops@example.com"
    # $MLXK_ALLOWED_SIGNERS comes before the manifest's setting
    other = signers(tmp_path / "env_signers", ("ci@example.com", keys["mallory"]))
    monkeypatch.setenv("MLXK_ALLOWED_SIGNERS", str(other))
    res = mlxk("import", str(good), "-f", str(m))
    assert res.exit_code == 3 and str(other) in res.stderr
    monkeypatch.delenv("MLXK_ALLOWED_SIGNERS")
    # a bundle's manifest naming its own judge does not make it one, on the first import
    shutil.copy(allowed, tmp_path / "connected-unsigned" / "signers")
    manifest = tmp_path / "connected-unsigned" / "models.yaml"
    manifest.write_text("allowed_signers: signers\n" + manifest.read_text())
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "connected-store"))
    judged = tmp_path / "transfer" / "judged.tar"
    assert mlxk("bundle", "-f", str(manifest), str(judged)).exit_code == 0
    monkeypatch.setenv("MLXK_STORE", str(tmp_path / "store"))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    res = mlxk("import", str(judged), "-f", str(fresh / "models.yaml"), "--json")
    assert res.exit_code == 0 and res.json["data"]["signature"] is None, res
    assert res.json["data"]["notes"] == [
        f"models.yaml now sets allowed_signers: {fresh / 'signers'}"
    ]


def test_verify_bundle_shows_whether_and_by_whom_it_is_signed(tmp_path, mlxk, connected, keys):
    allowed = signers(tmp_path / "site_signers", ("ops@example.com", keys["alice"]))
    unsigned = connected("unsigned", {"w": {"a.bin": A}})
    signed = connected("signed", {"w": {"a.bin": A}}, sign="alice")
    res = mlxk("verify", "--bundle", str(unsigned), "--json")
    assert res.exit_code == 0 and res.json["data"]["signature"] is None
    assert "not signed" in mlxk("verify", "--bundle", str(unsigned)).stdout
    res = mlxk("verify", "--bundle", str(signed), "--json")
    sig = res.json["data"]["signature"]
    assert (sig["identity"], sig["trusted"]) == (None, False)
    assert sig["fingerprint"] == fingerprint(keys["alice"])
    assert "not checked (no allowed_signers file)" in mlxk("verify", "--bundle", str(signed)).stdout
    res = mlxk("verify", "--bundle", str(signed), "--allowed-signers", str(allowed), "--json")
    assert res.json["data"]["signature"]["identity"] == "ops@example.com"
    res = mlxk("verify", "--bundle", str(unsigned), "--allowed-signers", str(allowed))
    assert res.exit_code == 3 and "not signed" in res.stderr


# ---------------------------------------------------------------- 4. verify against the lock


def test_verify_bundle_says_what_the_local_lock_needs_that_the_bundle_lacks(
    tmp_path, mlxk, connected, site, monkeypatch
):
    bundle = connected("four", {"w": {"weights.bin": FOUR, "a.bin": A}})
    m = site({"weights.bin": EIGHT, "a.bin": A})
    res = mlxk("verify", "--bundle", str(bundle), "-f", str(m), "--json")
    assert res.exit_code == 1 and res.json["status"] == "drift", res
    local = res.json["data"]["local_lock"]
    assert (local["lock"], local["needed"], local["carried"]) == ("mlxk.lock", 2, 1)
    assert local["missing"] == [
        {"workspace": "w", "path": "weights.bin", "sha256": sha(EIGHT), "size": len(EIGHT)}
    ]
    monkeypatch.chdir(m.parent)  # ./models.yaml and its lock are found without -f
    text = mlxk("verify", "--bundle", str(bundle)).stdout
    assert "MISSING for mlxk.lock: 1 of the 2 blobs it needs" in text
    assert f"missing    w/weights.bin  ({sha(EIGHT)[:12]}, {len(EIGHT)} B)" in text
    good = connected("eight", {"w": {"weights.bin": EIGHT, "a.bin": A}})
    res = mlxk("verify", "--bundle", str(good), "--json")
    assert res.exit_code == 0 and res.json["data"]["local_lock"]["complete"], res
    assert "carries every blob mlxk.lock needs (2)" in mlxk("verify", "--bundle", str(good)).stdout


# ---------------------------------------------------------------- bad input


def test_a_bundle_whose_lock_names_blobs_it_does_not_carry_writes_nothing(
    tmp_path, mlxk, connected
):
    bundle = connected("holey", {"w": {"a.bin": A, "b.bin": B}}, tar=False)
    (bundle / "blobs" / "sha256" / sha(B)[:2] / sha(B)).unlink()
    dest = tmp_path / "dest"
    dest.mkdir()
    res = mlxk("import", str(bundle), "-f", str(dest / "models.yaml"), "--json")
    assert res.exit_code == 3, res
    assert res.json["error"]["message"] == (
        f"import: {bundle} does not match its own lock: {sha(B)[:12]} (missing)"
    )
    assert list(dest.iterdir()) == [] and not (tmp_path / "store").exists()


def test_a_bundle_whose_index_claims_another_lock_digest_writes_nothing(tmp_path, mlxk, connected):
    bundle = connected("claims", {"w": {"a.bin": A}}, tar=False)
    index = json.loads((bundle / "bundle.json").read_text())
    index["lock_sha256"] = sha(b"another lock")
    (bundle / "bundle.json").chmod(0o644)
    (bundle / "bundle.json").write_text(json.dumps(index))
    dest = tmp_path / "dest"
    dest.mkdir()
    res = mlxk("import", str(bundle), "-f", str(dest / "models.yaml"))
    assert res.exit_code == 3
    assert res.stderr.splitlines()[0] == (
        f"error: {bundle}: mlxk.lock does not match bundle.json (tampered?)"
    )
    assert list(dest.iterdir()) == [] and not (tmp_path / "store").exists()


def test_a_signature_that_is_not_an_ssh_signature_writes_nothing(tmp_path, mlxk, connected, keys):
    allowed = signers(tmp_path / "site_signers", ("ops@example.com", keys["alice"]))
    bundle = connected("junk", {"w": {"a.bin": A}}, sign="alice", tar=False)
    (bundle / "bundle.sig").chmod(0o644)
    (bundle / "bundle.sig").write_text("-----BEGIN PGP SIGNATURE-----\nAAAA\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    for extra in ([], ["--allowed-signers", str(allowed)]):
        res = mlxk("import", str(bundle), "-f", str(dest / "models.yaml"), *extra)
        assert res.exit_code == 3, res
        assert res.stderr.startswith(f"error: {bundle}/bundle.sig: not an SSH signature")
        assert list(dest.iterdir()) == [] and not (tmp_path / "store").exists()
    assert mlxk("verify", "--bundle", str(bundle)).exit_code == 3


def test_an_allowed_signers_file_with_a_bad_line_is_exit_2_before_the_bundle_is_read(
    tmp_path, mlxk, connected, keys
):
    bundle = connected("good", {"w": {"a.bin": A}}, sign="alice")
    allowed = signers(tmp_path / "site_signers", ("ops@example.com", keys["alice"]))
    allowed.write_text(allowed.read_text() + "ci@example.com ssh-ed25519 not-base64\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    for args in (
        ["import", str(bundle), "-f", str(dest / "models.yaml")],
        ["sync", "--from", str(bundle), "-f", str(dest / "models.yaml")],
        ["verify", "--bundle", str(bundle)],
    ):
        res = mlxk(*args, "--allowed-signers", str(allowed))
        assert res.exit_code == 2, res
        assert res.stderr.startswith(f"error: {allowed}:3: bad allowed_signers line")
    assert list(dest.iterdir()) == [] and not (tmp_path / "store").exists()


def test_a_missing_key_or_one_needing_a_passphrase_writes_no_bundle(tmp_path, mlxk, keys):
    m = project(tmp_path / "p", {"w": {"a.bin": A}})
    assert mlxk("sync", "-f", str(m)).exit_code == 0
    out = tmp_path / "out.tar"
    res = mlxk("bundle", "-f", str(m), str(out), "--sign", str(tmp_path / "id_nope"))
    assert res.exit_code == 2 and f"{tmp_path / 'id_nope'}: no such signing key" in res.stderr
    start = time.monotonic()
    res = mlxk("bundle", "-f", str(m), str(out), "--sign", str(keys["locked"]), "--json")
    assert time.monotonic() - start < 10
    assert res.exit_code == 2 and "needs a passphrase" in res.json["error"]["message"]
    assert not out.exists() and list(tmp_path.glob(".out.tar*")) == []
