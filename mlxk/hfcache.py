"""What a Hugging Face cache (`$HF_HOME/hub`) holds, read from its layout, nothing imported.

After an online run with `HF_HOME` pointed at an empty directory (a capture run), this lists
the repos the libraries fetched by repo id, with the ref they asked for, its commit and the
files they read: what `runtime:` must name so that the next run works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CachedRepo:
    repo: str
    revision: str  # the ref the loader asked for ("main"), or the commit if it asked by sha
    commit: str
    files: tuple[str, ...]  # the snapshot's files, sorted
    absent: tuple[str, ...] = ()  # files the loader asked for that the repo does not have

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


def _files(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))


def _refs(repo_dir: Path) -> dict[str, str]:
    """ref name ("main", "refs/pr/1") → commit."""
    refs = repo_dir / "refs"
    return {name: (refs / name).read_text().strip() for name in _files(refs)}


def cached_repos(hf_home: Path) -> list[CachedRepo]:
    """Every model repo snapshot in `hf_home/hub`, once per ref that points at it."""
    out = []
    for repo_dir in sorted(Path(hf_home, "hub").glob("models--*")):
        repo = "/".join(repo_dir.name.split("--")[1:])
        refs = _refs(repo_dir)
        snapshots = repo_dir / "snapshots"
        for snap in sorted(snapshots.iterdir()) if snapshots.is_dir() else ():
            files = _files(snap)
            absent = _files(repo_dir / ".no_exist" / snap.name)
            for rev in sorted(r for r, c in refs.items() if c == snap.name) or [snap.name]:
                out.append(CachedRepo(repo, rev, snap.name, files, absent))
    return out
