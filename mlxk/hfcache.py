"""What a Hugging Face cache (`$HF_HOME/hub`) holds, read from its layout, nothing imported.

`snapshots` lists every repo snapshot with the refs that point at it (what `mlxk health
--verbose` shows of a workspace's `.hf_cache`). For a capture run, `state` notes what a cache
held before a command ran and `fetched_since` what the command added: per repo and commit,
the files it downloaded and the refs it wrote (the revision the loader asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Snapshot:
    repo: str
    commit: str
    refs: tuple[str, ...]  # the refs pointing at it ("main", "v1", "refs/pr/1"), sorted
    files: tuple[str, ...]  # the snapshot's files, sorted
    absent: tuple[str, ...] = ()  # files a loader asked for that the repo does not have

    def to_dict(self) -> dict:
        return {
            "repo": self.repo,
            "commit": self.commit,
            "refs": list(self.refs),
            "files": list(self.files),
            "absent": list(self.absent),
        }


@dataclass(frozen=True)
class CachedRepo:
    repo: str
    revision: str  # the ref the loader asked for ("main"), or the commit if it asked by sha
    commit: str
    files: tuple[str, ...]  # the snapshot's files, sorted
    absent: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "files": list(self.files),
            "absent": list(self.absent),
        }

    def runtime_entry(self) -> dict:
        """This repo as a models.yaml `runtime:` entry."""
        return {"source": f"hf://{self.repo}@{self.revision}", "include": list(self.files)}


@dataclass(frozen=True)
class CacheState:
    """What a cache held: every snapshot file (repo dir/commit/path) and every ref."""

    files: frozenset[str]
    refs: dict  # {(repo, ref): commit}


def _files(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))


def _refs(repo_dir: Path) -> dict[str, str]:
    """ref name ("main", "refs/pr/1") → commit."""
    refs = repo_dir / "refs"
    return {name: (refs / name).read_text().strip() for name in _files(refs)}


def _repo_dirs(hf_home: Path):
    for repo_dir in sorted(Path(hf_home, "hub").glob("models--*")):
        yield "/".join(repo_dir.name.split("--")[1:]), repo_dir


def snapshots(hf_home: Path) -> list[Snapshot]:
    """Every model repo snapshot in `hf_home/hub`, with the refs that point at it."""
    out = []
    for repo, repo_dir in _repo_dirs(hf_home):
        refs = _refs(repo_dir)
        folder = repo_dir / "snapshots"
        for snap in sorted(folder.iterdir()) if folder.is_dir() else ():
            out.append(
                Snapshot(
                    repo,
                    snap.name,
                    tuple(sorted(r for r, c in refs.items() if c == snap.name)),
                    _files(snap),
                    _files(repo_dir / ".no_exist" / snap.name),
                )
            )
    return out


def cached_repos(hf_home: Path) -> list[CachedRepo]:
    """Every model repo snapshot in `hf_home/hub`, once per ref that points at it."""
    return [
        CachedRepo(s.repo, rev, s.commit, s.files, s.absent)
        for s in snapshots(hf_home)
        for rev in s.refs or (s.commit,)
    ]


def state(hf_home: Path) -> CacheState:
    files, refs = set(), {}
    for s in snapshots(hf_home):
        files.update(f"{s.repo}/{s.commit}/{f}" for f in s.files)
        refs.update({(s.repo, r): s.commit for r in s.refs})
    return CacheState(frozenset(files), refs)


def fetched_since(hf_home: Path, before: CacheState) -> list[CachedRepo]:
    """What a command added to the cache since `before`: per repo, commit and revision asked
    for, the snapshot files that were not there. The revision is each ref the command wrote
    or moved to that commit; else one that already pointed there; else the commit itself (a
    loader that asked by sha writes no ref)."""
    out = []
    for s in snapshots(hf_home):
        new = tuple(f for f in s.files if f"{s.repo}/{s.commit}/{f}" not in before.files)
        if not new:
            continue
        moved = tuple(r for r in s.refs if before.refs.get((s.repo, r)) != s.commit)
        for rev in moved or s.refs[:1] or (s.commit,):
            out.append(CachedRepo(s.repo, rev, s.commit, new, s.absent))
    return out
