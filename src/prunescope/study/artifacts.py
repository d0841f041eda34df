"""Artifact storage (weights, masks, gradients) in a local folder or under any fsspec URL.

Files are named by job id (``<root>/<job kind>/<job id><suffix>``), so a rerun overwrites a file
with identical content. Writes are atomic: a job's files are written into a private temporary
folder and moved into place (local) or uploaded (remote) only when complete, so a killed worker
never leaves a truncated artifact under a final name.

Integrity: :meth:`Artifacts.writing` records the sha256 of every file it puts in place
(:meth:`Artifacts.written_by`); the store keeps them beside the job (``jobs.checksums``), and an
:class:`Artifacts` opened with those ``expected`` digests checks each file it reads, so a file
damaged on disk later is named, with the job that wrote it, instead of failing somewhere
inside a loader (:class:`ArtifactDamaged`).

Files that no job's record covers (the shifted test sets any evaluation may write, an audit's
data file) carry their digest beside them: :meth:`Artifacts.writing` with ``digests=True``
also writes ``<file>.sha256``, and :meth:`Artifacts.reading_checked` reads such a file only if
its content still has that digest; so every artifact read is checked, whatever wrote it.

The store records artifacts by their :meth:`Artifacts.name` relative to the root
(``train/<id>.safetensors``) and resolves them with :meth:`Artifacts.url` under the root the
study names now, so a moved or copied study folder reads its own files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path, PurePosixPath

import fsspec
from fsspec.implementations.local import LocalFileSystem

from prunescope.errors import UserError

TMP_PREFIX = ".tmp-"
#: suffix of the digest file written beside a file no job's record covers (hex sha256, one line)
DIGEST_SUFFIX = ".sha256"
_LOCAL_PROTOCOLS = (None, "file", "local")


class ArtifactDamaged(UserError, ValueError):
    """An artifact's content differs from the sha256 recorded when it was written, or it
    cannot be parsed; the message names the file, the job that wrote it and the command that
    redoes that job."""


class ArtifactRootError(UserError, ValueError):
    """The artifact root's fsspec backend is unknown or not installed."""


def redo_hint(job_id: str, study: str | None = None) -> str:
    """The commands that recompute job ``job_id`` and its dependents."""
    s = study or "STUDY.toml"
    return f"`prunescope invalidate {s} {job_id[:12]}`, then `prunescope run {s}`"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file's content."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_digest(url: str, digest: str, expected: tuple[str, str] | None,
                 study: str | None = None) -> None:
    """Raise :class:`ArtifactDamaged` when ``digest`` (hex sha256 of ``url``'s content) is not
    the recorded one; ``expected`` is ``(sha256, job id of the writer)`` (``None``: nothing was
    recorded, e.g. a store of prunescope < 0.2: nothing is checked; writer ``""``: the digest
    was written beside the file, :data:`DIGEST_SUFFIX`)."""
    if expected is None or digest == expected[0]:
        return
    sha, writer = expected
    if not writer:
        raise ArtifactDamaged(f"artifact {url} is damaged: its sha256 is {digest[:16]}..., "
                              f"{url}{DIGEST_SUFFIX} recorded {sha[:16]}... when it was written")
    raise ArtifactDamaged(
        f"artifact {url} is damaged: its sha256 is {digest[:16]}..., job {writer[:12]} recorded "
        f"{sha[:16]}... when it wrote it; redo that job and its dependents: "
        f"{redo_hint(writer, study)}")


class Artifacts:
    """The artifact root of a study.

    Args:
        root: local folder or fsspec URL (``s3://bucket/study``, ``memory://x``, ...).
        expected: ``{url: (sha256 hex, job id of the writer)}`` of files to check when read
            (the store's ``checksums`` of the jobs whose files will be read).
    """

    def __init__(self, root: str, expected: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.root = root
        protocol, _ = fsspec.core.split_protocol(root)
        self.is_local = protocol in _LOCAL_PROTOCOLS
        self.base = fsspec.core.url_to_fs(root)[1] if self.is_local else None
        self.expected = dict(expected or {})
        #: ``{url: sha256 hex}`` of every file :meth:`writing` put in place
        self.written: dict[str, str] = {}

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec file system of the root (opened on first use)."""
        if self.is_local:
            return LocalFileSystem()
        try:
            fs, base = fsspec.core.url_to_fs(self.root)
        except (ImportError, ValueError) as e:
            protocol = fsspec.core.split_protocol(self.root)[0]
            raise ArtifactRootError(
                f"artifacts = {self.root!r}: the fsspec backend of {protocol}:// is not "
                f"available ({e}); install it (e.g. `pip install s3fs` for s3://, gcsfs for "
                "gs://) or set `artifacts` to a local folder") from e
        self.base = base
        return fs

    def url(self, name: str) -> str:
        """The full path (local) or URL (remote) of artifact ``name`` (``"train/<id>.st"``);
        an absolute path or a URL is returned as it is."""
        if os.path.isabs(name) or fsspec.core.split_protocol(name)[0] is not None:
            return name
        if self.is_local:
            return str(Path(self.base) / name)
        return f"{self.root.rstrip('/')}/{name}"

    def name(self, url: str) -> str:
        """``url`` relative to the root (``"train/<id>.st"``) if it lies under it, else ``url``
        (the inverse of :meth:`url`; what the store records)."""
        if self.is_local:
            protocol, path = fsspec.core.split_protocol(url)
            if protocol not in _LOCAL_PROTOCOLS or not os.path.isabs(path):
                return url
            try:
                return Path(path).relative_to(self.base).as_posix()
            except ValueError:
                return url
        prefix = self.root.rstrip("/") + "/"
        return url[len(prefix):] if url.startswith(prefix) else url

    def written_by(self, job_id: str) -> dict[str, str]:
        """``{url: sha256}`` of the files :meth:`writing` put in place for job ``job_id`` (the
        files whose name starts with the id: the checkpoint and its sidecar, ...)."""
        return {u: s for u, s in self.written.items()
                if PurePosixPath(u).name.startswith(job_id)}

    @contextmanager
    def writing(self, folder: str, *, digests: bool = False) -> Iterator[Path]:
        """Yield an empty local temporary folder; on a clean exit every file written into it
        is moved to ``<root>/<folder>/`` under the same name (and its sha256 recorded in
        :attr:`written`). ``digests=True``: each file's sha256 is also written beside it, as
        ``<name>.sha256``, put in place after the file (for :meth:`reading_checked`)."""
        if self.is_local:
            dest = Path(self.base) / folder
            dest.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest))
        else:
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        try:
            yield tmp
            for f in sorted(tmp.iterdir()):
                digest = sha256_file(f)
                beside = [f]
                if digests:
                    beside.append(f.with_name(f.name + DIGEST_SUFFIX))
                    beside[1].write_text(digest + "\n")
                for g in beside:
                    if self.is_local:
                        os.replace(g, dest / g.name)
                    else:
                        self.fs.put_file(str(g), f"{self.base.rstrip('/')}/{folder}/{g.name}")
                self.written[self.url(f"{folder}/{f.name}")] = digest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def reading(self, *urls: str) -> Iterator[list[Path]]:
        """Yield local paths of the given artifact URLs (downloaded to a temporary folder when
        remote, deleted afterwards). Missing files raise ``FileNotFoundError`` naming them; a
        file whose sha256 differs from :attr:`expected` raises :class:`ArtifactDamaged`."""
        if self.is_local:
            paths = [Path(u) for u in urls]
            missing = [u for u, p in zip(urls, paths) if not p.exists()]
            if missing:
                writers = sorted({self.expected[u][1] for u in missing if u in self.expected})
                raise FileNotFoundError(
                    f"artifact(s) {missing} are missing although their job is recorded as done; "
                    "restore the artifacts folder, or redo the job(s) that wrote them"
                    + "".join(f"; {redo_hint(w)}" for w in writers))
            for u, p in zip(urls, paths):
                check_digest(u, sha256_file(p), self.expected.get(u))
            yield paths
            return
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        try:
            out = []
            for i, u in enumerate(urls):
                local = tmp / f"{i}-{u.rsplit('/', 1)[-1]}"
                fs, path = fsspec.core.url_to_fs(u)
                fs.get_file(path, str(local))
                check_digest(u, sha256_file(local), self.expected.get(u))
                out.append(local)
            yield out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def reading_checked(self, url: str) -> Iterator[Path]:
        """Yield the local path of a file written with ``writing(..., digests=True)``, after
        checking its content against the sha256 written beside it. A file without a readable
        digest beside it (written by an older prunescope, or the digest damaged) or whose
        content differs raises :class:`ArtifactDamaged`; a missing file ``FileNotFoundError``."""
        digest_url = url + DIGEST_SUFFIX
        try:
            fs, path = fsspec.core.url_to_fs(digest_url)
            sha = fs.cat_file(path).decode("ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError) as e:
            if not self.exists(url):
                raise FileNotFoundError(f"artifact {url} is missing") from e
            raise ArtifactDamaged(f"artifact {url} has no readable sha256 beside it "
                                  f"({digest_url}), so its content cannot be checked") from e
        with Artifacts(self.root, {url: (sha, "")}).reading(url) as (local,):
            yield local

    def exists(self, url: str) -> bool:
        """Whether the artifact at ``url`` (as returned by :meth:`url`) exists."""
        if self.is_local:
            return Path(url).exists()
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.exists(path))

    def clean_temporaries(self) -> int:
        """Delete temporary folders left by killed workers under a local root; returns how many.
        A remote root's file system is opened, so that a missing fsspec backend is reported
        here (:class:`ArtifactRootError`), before any job runs."""
        if not self.is_local:
            self.fs  # noqa: B018 -- opens the backend or raises ArtifactRootError
            return 0
        if not Path(self.base).is_dir():
            return 0
        stale = [p for p in Path(self.base).glob(f"*/{TMP_PREFIX}*") if p.is_dir()]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)

    def count_files(self) -> int:
        """Number of artifact files under a local root (``<root>/<kind>/<file>``; 0 for a
        remote root, which is not listed)."""
        if not self.is_local or not Path(self.base).is_dir():
            return 0
        return sum(1 for p in Path(self.base).glob("*/*") if p.is_file())


def read_bytes(url: str, expected: tuple[str, str] | None = None, study: str | None = None
               ) -> bytes:
    """The content of one artifact, given its local path or fsspec URL (as recorded in a job's
    ``artifacts``); a missing file raises ``FileNotFoundError`` naming it, content that differs
    from ``expected`` = ``(sha256, writer job id)`` raises :class:`ArtifactDamaged`."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"artifact {url} is missing") from e
    check_digest(url, hashlib.sha256(data).hexdigest(), expected, study)
    return data
