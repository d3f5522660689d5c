#!/usr/bin/env bash
# Installs everything mlxk and its tests need on a fresh Debian machine; quick when done already.
#   .venv/       mlxk itself, editable, with the cpu (mlx, mlx-lm) and test extras
#   .venv-olah/  olah, the self-hosted Hugging Face mirror the tests serve repos from
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages, installed only when a command they provide is missing:
#   git-lfs (hub repos in tests); openssh-client (ssh-keygen -Y for signed bundles,
#   mlxk/signing.py); docker-registry (the CNCF distribution registry the OCI tests run),
#   apache2-utils (htpasswd for its basic-auth config), openssl (the tests' private CA)
APT=()
for pair in git-lfs:git-lfs ssh-keygen:openssh-client docker-registry:docker-registry \
  htpasswd:apache2-utils openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || APT+=("${pair#*:}")
done
# xfsprogs: mkfs.xfs for the reflink tests on a loop-mounted XFS (tests/test_reflink_xfs.py)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || [ -x /sbin/mkfs.xfs ] || APT+=(xfsprogs)
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[cpu,vlm,audio,test]'

[ -x .venv-olah/bin/olah-cli ] || { "$PY" -m venv .venv-olah &&
  .venv-olah/bin/python -m pip install -q --disable-pip-version-check olah==0.5.4; }
