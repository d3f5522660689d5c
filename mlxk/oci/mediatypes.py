"""Media types, written from the CNCF ModelPack spec (modelpack/model-spec).

Source: docs/spec.md ("OCI Image Manifest Specification For Model Artifacts") and
specs-go/v1/mediatype.go; annotation keys from docs/annotations.md and specs-go/v1/annotations.go.
"""

from __future__ import annotations

# --- ModelPack (specs-go/v1/mediatype.go)
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"

KINDS = ("weight", "weight.config", "doc", "code", "dataset")
PACKINGS = ("raw", "tar", "tar+gzip", "tar+zstd")
_PREFIX = "application/vnd.cncf.model."


def layer_type(kind: str, packing: str = "raw") -> str:
    """`weight`, `raw` -> application/vnd.cncf.model.weight.v1.raw (packing: raw, tar, ...)."""
    if kind not in KINDS or packing not in PACKINGS:
        raise ValueError(f"no ModelPack layer type for {kind!r}/{packing!r}")
    return f"{_PREFIX}{kind}.v1.{packing}"


RAW_LAYERS = {layer_type(k): k for k in KINDS}
TAR_LAYERS = {layer_type(k, p): k for k in KINDS for p in PACKINGS if p != "raw"}

# --- ModelPack annotation keys (specs-go/v1/annotations.go)
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_MEDIATYPE_UNTESTED = "org.cncf.model.file.mediatype.untested"

# --- OCI image-spec and Docker distribution types a registry may answer with
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)

# Registry 2.8 serves an OCI manifest only to a client whose Accept names its type; name
# every manifest type, so an image or index comes back too and can be refused by its type.
ACCEPT_MANIFESTS = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

# --- OCI pre-defined annotation keys (image-spec annotations.md)
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
