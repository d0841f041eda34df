"""Artifact storage (weights, masks, gradients) in a local folder or under any fsspec URL.

Files are named by job id, so a rerun overwrites a file with identical content. Writes are
atomic: a job's files are written into a private temporary folder and moved into place (local)
or uploaded (remote) only when complete, so a killed worker never leaves a truncated artifact
under a final name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

TMP_PREFIX = ".tmp-"


class Artifacts:
    """The artifact root of a study.

    Args:
        root: local folder or fsspec URL (``s3://bucket/study``, ``memory://x``, ...).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.base = fsspec.core.url_to_fs(root)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def url(self, name: str) -> str:
        """The full path (local) or URL (remote) of artifact ``name`` (``"train/<id>.st"``)."""
        if self.is_local:
            return str(Path(self.base) / name)
        return f"{self.fs.unstrip_protocol(self.base.rstrip('/'))}/{name}"

    @contextmanager
    def writing(self, folder: str) -> Iterator[Path]:
        """Yield an empty local temporary folder; on a clean exit every file written into it
        is moved to ``<root>/<folder>/`` under the same name."""
        if self.is_local:
            dest = Path(self.base) / folder
            dest.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest))
        else:
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        try:
            yield tmp
            for f in sorted(tmp.iterdir()):
                if self.is_local:
                    os.replace(f, dest / f.name)
                else:
                    self.fs.put_file(str(f), f"{self.base.rstrip('/')}/{folder}/{f.name}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def reading(self, *urls: str) -> Iterator[list[Path]]:
        """Yield local paths of the given artifact URLs (downloaded to a temporary folder when
        remote, deleted afterwards); missing files raise ``FileNotFoundError`` naming them."""
        if self.is_local:
            paths = [Path(u) for u in urls]
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise FileNotFoundError(
                    f"artifact(s) {missing} are missing although their job is recorded as done; "
                    "restore the artifacts folder, or delete the study's study.sqlite to "
                    "recompute everything")
            yield paths
            return
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        try:
            out = []
            for i, u in enumerate(urls):
                local = tmp / f"{i}-{u.rsplit('/', 1)[-1]}"
                fs, path = fsspec.core.url_to_fs(u)
                fs.get_file(path, str(local))
                out.append(local)
            yield out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def exists(self, url: str) -> bool:
        """Whether the artifact at ``url`` (as returned by :meth:`url`) exists."""
        if self.is_local:
            return Path(url).exists()
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.exists(path))

    def clean_temporaries(self) -> int:
        """Delete temporary folders left by killed workers under a local root; returns how many."""
        if not self.is_local or not Path(self.base).is_dir():
            return 0
        stale = [p for p in Path(self.base).glob(f"*/{TMP_PREFIX}*") if p.is_dir()]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)


def read_bytes(url: str) -> bytes:
    """The content of one artifact, given its local path or fsspec URL (as recorded in a job's
    ``artifacts``); a missing file raises ``FileNotFoundError`` naming it."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"artifact {url} is missing") from e
