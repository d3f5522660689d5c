"""OCI registries as mlxk's distribution engine: the lower layers.

    reference.py    `oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`, parsed and checked
    mediatypes.py   the media types of the CNCF ModelPack spec and of OCI/Docker images
    modelpack.py    pure logic: files -> ModelPack manifest + config bytes, and back
    credentials.py  registry logins from docker's config.json and podman's auth.json
    auth.py         answering a registry's Basic or Bearer challenge (token endpoint)
    transport.py    one HTTP connection pool per registry: scheme, TLS, auth, errors
    client.py       `Registry`: manifests and blobs (HEAD, ranged GET, mount, chunked push)
    sessions.py     where an interrupted blob upload is remembered so it can resume

Nothing here reads the environment: `mlxk.settings.Settings.registry` (a `RegistrySettings`)
is passed in.
"""
