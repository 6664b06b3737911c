"""Bringing assets into place: each one kept where an accepted file is already there, else taken from a local
folder (`--from`) or from its origins, in order, and put into place only once its sha256 is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from skdcgn.fetch.catalog import CATALOG, Asset, Catalog, FetchError
from skdcgn.fetch.download import http_origin
from skdcgn.fetch.install import OriginsFailed, few_words, install_first
from skdcgn.fetch.local import LocalFolder
from skdcgn.utils.hashing import file_sha256

UNPUBLISHED = "(no published sha256: the teacher checks the checkpoint's layout when it loads)"
Placed = tuple[Path, Asset]  # where an asset goes


@dataclass(frozen=True)
class Report:
    fetched: int
    kept: int

    def summary(self) -> str:
        return f"fetched {self.fetched}, kept {self.kept} already present"


def fetch(root: Path, groups: Sequence[str] = (), source: Path | None = None, force: bool = False,
          catalog: Catalog = CATALOG) -> Report:
    """Every asset of `groups` (the catalog's defaults where none is named) into its group's folder under
    `root`, from the local folder `source` where given, else from its origins. `force` replaces files in place
    whose sha256 is not accepted. Raises FetchError, in one line, for the first asset that cannot be had."""
    placed = [(Path(root) / group.folder / asset.name, asset)
              for group in catalog.select(groups) for asset in group.assets]
    return fetch_files(placed, source, force)


def fetch_files(placed: Sequence[Placed], source: Path | None = None, force: bool = False) -> Report:
    """Each asset to its path, as `fetch` does. Files in place are all checked first, so that a wrong one stops
    the run before anything is downloaded."""
    local = LocalFolder.scan(source) if source is not None else None
    wanted = [(target, asset) for target, asset in placed if not _keep(target, asset, force)]
    for target, asset in wanted:
        _bring(target, asset, local)
    return Report(fetched=len(wanted), kept=len(placed) - len(wanted))


def _keep(target: Path, asset: Asset, force: bool) -> bool:
    """Whether the file already at `target` stays: it does with an accepted sha256, and, short of `force`,
    where none is published to judge it by."""
    if not target.is_file():
        return False
    sha256 = file_sha256(target)
    if sha256 in asset.accepted:
        print(f"ok {target}", flush=True)
        return True
    if force:
        print(f"replacing {target} (sha256 {sha256})", flush=True)
        return False
    if not asset.accepted:
        print(f"ok {target}: sha256 {sha256} {UNPUBLISHED}; --force downloads it again", flush=True)
        return True
    raise FetchError(f"{target} is in place with sha256 {sha256}, not the accepted {asset.describe_accepted()}; "
                     "`skdcgn fetch --force` replaces it")


def _bring(target: Path, asset: Asset, local: LocalFolder | None) -> None:
    origins = [(url, http_origin(url)) for url in asset.urls] if local is None else local.origins(asset)
    try:
        origin, sha256 = install_first(target, asset.accepted, origins)
    except OriginsFailed as error:
        raise FetchError(_offline(target, asset, error) if local is None
                         else _not_in_folder(target, asset, local.path, error)) from None
    except OSError as error:  # origins' own errors are OriginFailed: this is writing the file here
        raise FetchError(f"cannot write {target}: {few_words(error)}; it needs a writable folder with room") from None
    print(f"fetched {target} from {origin}" + ("" if asset.accepted else f": sha256 {sha256} {UNPUBLISHED}"),
          flush=True)


def _offline(target: Path, asset: Asset, error: OriginsFailed) -> str:
    return (f"cannot fetch {target}: every origin failed: {error}; offline, give `skdcgn fetch --from DIR` a "
            f"folder holding {asset.file_names[0]}, or put the file at {target}")


def _not_in_folder(target: Path, asset: Asset, source: Path, error: OriginsFailed) -> str:
    names = " or ".join(asset.file_names)
    if not error.failures:
        return f"--from {source}: no file named {names} below it, for {target}"
    return f"--from {source}: no file named {names} with an accepted sha256 below it, for {target}: {error}"
