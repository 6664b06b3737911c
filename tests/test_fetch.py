"""`skdcgn fetch` against origins on 127.0.0.1 that the tests start and script: never the internet."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import re
import stat
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest
from typer.testing import CliRunner

from skdcgn.cli import app
from skdcgn.fetch import download
from skdcgn.fetch.catalog import CATALOG, CGN_COMMIT, Asset, Catalog, FetchError, Group
from skdcgn.fetch.fetching import fetch

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, so the connection is refused at once
BODY = bytes(range(256)) * 40  # 10,240 bytes: several reads of the downloader's chunks
CUT_AT = 3000
Handler = http.server.BaseHTTPRequestHandler
Reply = Callable[[Handler], None]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def whole(body: bytes, **headers: str) -> Reply:
    def reply(handler: Handler) -> None:
        _send(handler, 200, body, {"Content-Length": str(len(body)), **headers})

    return reply


def cut(body: bytes, at: int = CUT_AT) -> Reply:
    """Announces the whole body, sends its first `at` bytes, and closes the connection (HTTP/1.0)."""

    def reply(handler: Handler) -> None:
        _send(handler, 200, body[:at], {"Content-Length": str(len(body))})

    return reply


def ranged(body: bytes) -> Reply:
    """Honours `Range: bytes=N-` as a server that supports resuming does."""

    def reply(handler: Handler) -> None:
        asked = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if not asked:
            return whole(body)(handler)
        start = int(asked[1])
        _send(handler, 206, body[start:], {"Content-Length": str(len(body) - start),
                                           "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})

    return reply


def status(code: int) -> Reply:
    def reply(handler: Handler) -> None:
        handler.send_error(code)

    return reply


def _send(handler: Handler, code: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(code)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


class LocalOrigin:
    """An HTTP server on 127.0.0.1 whose paths answer with scripted replies, the last one repeating; it
    records every request's path and Range header."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, str | None]] = []
        origin = self

        class Scripted(Handler):
            def do_GET(self) -> None:
                origin.requests.append((self.path, self.headers.get("Range")))
                replies = origin.replies.get(self.path) or [status(404)]
                (replies.pop(0) if len(replies) > 1 else replies[0])(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, *replies: Reply) -> str:
        self.replies[path] = list(replies)
        return self.url + path

    def asked(self, path: str) -> list[str | None]:
        """The Range header of each request for `path` (None where there was none)."""
        return [range_ for asked, range_ in self.requests if asked == path]


@pytest.fixture
def origin() -> Iterator[LocalOrigin]:
    local = LocalOrigin()
    thread = threading.Thread(target=local.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield local
    local.server.shutdown()
    local.server.server_close()
    thread.join()


def catalog_of(*assets: Asset) -> Catalog:
    return Catalog({"stuff": Group("data/stuff", assets, "test assets")}, defaults=("stuff",))


def asset(*urls: str, name: str = "blob.bin", body: bytes = BODY) -> Asset:
    return Asset(name, {sha256(body): "the test's bytes"}, urls)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def one_line_error(call: Callable[[], object]) -> str:
    with pytest.raises(FetchError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_good_file_is_fetched_with_progress_then_kept(tmp_path, origin, capsys):
    url = origin.serve("/blob.bin", whole(BODY))
    catalog = catalog_of(asset(url))
    report = fetch(tmp_path, catalog=catalog)
    assert (tmp_path / "data/stuff/blob.bin").read_bytes() == BODY
    assert files_under(tmp_path) == ["data/stuff/blob.bin"]  # no partial left beside it
    assert report.summary() == "fetched 1, kept 0 already present"
    assert f"download {url} (bytes): {len(BODY)}/{len(BODY)}" in capsys.readouterr().out
    assert fetch(tmp_path, catalog=catalog).summary() == "fetched 0, kept 1 already present"
    assert len(origin.requests) == 1


@pytest.mark.parametrize("first", [whole(b"not the file"), status(404), cut(BODY)],
                         ids=["bad-sha256", "404", "truncated"])
def test_a_failing_origin_gives_way_to_the_next(tmp_path, origin, first, capsys):
    catalog = catalog_of(asset(origin.serve("/first", first), origin.serve("/second", whole(BODY))))
    fetch(tmp_path, catalog=catalog)
    assert (tmp_path / "data/stuff/blob.bin").read_bytes() == BODY
    assert files_under(tmp_path) == ["data/stuff/blob.bin"]
    assert f"from {origin.url}/second" in capsys.readouterr().out


@pytest.mark.parametrize("reply, why", [
    (whole(b"not the file"), f"sha256 {sha256(b'not the file')} is not an accepted one"),
    (status(404), "HTTP 404 Not Found"),
    (cut(BODY), f"truncated at {CUT_AT} of {len(BODY)} bytes, {download.ATTEMPTS} times"),
], ids=["bad-sha256", "404", "truncated"])
def test_when_every_origin_fails_nothing_is_left_and_each_url_is_named(tmp_path, origin, reply, why):
    url = origin.serve("/only", reply)
    root = tmp_path / "project"
    message = one_line_error(lambda: fetch(root, catalog=catalog_of(asset(url))))
    assert f"{url} ({why})" in message
    assert not root.exists()  # neither the file, nor its partial, nor the folders made for them


def test_a_body_cut_short_every_time_is_retried_a_bounded_number_of_times(tmp_path, origin):
    url = origin.serve("/cut", cut(BODY))
    with pytest.raises(FetchError):
        fetch(tmp_path, catalog=catalog_of(asset(url)))
    # The server ignores Range, so each retry asks from the bytes written and gets the file from zero again.
    assert origin.asked("/cut") == [None] + [f"bytes={CUT_AT}-"] * (download.ATTEMPTS - 1)


def test_a_cut_download_is_resumed_with_range(tmp_path, origin):
    url = origin.serve("/resumable", cut(BODY), ranged(BODY))
    fetch(tmp_path, catalog=catalog_of(asset(url)))
    assert origin.asked("/resumable") == [None, f"bytes={CUT_AT}-"]
    assert (tmp_path / "data/stuff/blob.bin").read_bytes() == BODY


def test_a_cut_download_restarts_from_zero_where_the_server_ignores_range(tmp_path, origin):
    # Appending the whole file to the bytes already written would fail the sha256: the file must start over.
    url = origin.serve("/no-range", cut(BODY), whole(BODY))
    fetch(tmp_path, catalog=catalog_of(asset(url)))
    assert origin.asked("/no-range") == [None, f"bytes={CUT_AT}-"]
    assert (tmp_path / "data/stuff/blob.bin").read_bytes() == BODY


def test_an_unreachable_origin_says_how_to_supply_the_file_offline(tmp_path):
    url = f"{UNREACHABLE}blob.bin"
    root = tmp_path / "project"
    message = one_line_error(lambda: fetch(root, catalog=catalog_of(asset(url))))
    assert f"{url} (" in message and "refused" in message
    assert "skdcgn fetch --from DIR" in message and str(root / "data/stuff/blob.bin") in message
    assert not root.exists()


def test_a_wrong_file_in_place_is_refused_and_force_replaces_it(tmp_path, origin):
    target, other = tmp_path / "data/stuff/blob.bin", tmp_path / "data/stuff/other.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an old version")
    catalog = catalog_of(asset(origin.serve("/blob.bin", whole(BODY))),
                         asset(origin.serve("/other.bin", whole(b"other")), name="other.bin", body=b"other"))
    message = one_line_error(lambda: fetch(tmp_path, catalog=catalog))
    assert str(target) in message and sha256(b"an old version") in message and sha256(BODY) in message
    assert "--force" in message
    # Refused before anything else is touched: nothing downloaded, the wrong file as it was.
    assert origin.requests == [] and not other.exists() and target.read_bytes() == b"an old version"
    assert fetch(tmp_path, force=True, catalog=catalog).summary() == "fetched 2, kept 0 already present"
    assert target.read_bytes() == BODY


def test_a_web_page_is_not_taken_for_a_file_without_published_sha256(tmp_path, origin):
    page = whole(b"<html>Google Drive: quota exceeded</html>", **{"Content-Type": "text/html; charset=utf-8"})
    url = origin.serve("/cgn.pth", page)
    message = one_line_error(lambda: fetch(tmp_path / "project", catalog=catalog_of(Asset("cgn.pth", {}, (url,)))))
    assert f"{url} (a web page instead of the file" in message
    assert not (tmp_path / "project").exists()


def test_a_target_that_cannot_be_written_is_one_line(tmp_path, origin):
    (tmp_path / "data").write_bytes(b"a file where the folder should be")
    catalog = catalog_of(asset(origin.serve("/blob.bin", whole(BODY))))
    message = one_line_error(lambda: fetch(tmp_path, catalog=catalog))
    assert message.startswith(f"cannot write {tmp_path / 'data/stuff/blob.bin'}: ") and "writable" in message


def test_a_file_without_published_sha256_is_reported_kept_and_forced_again(tmp_path, origin, capsys):
    url = origin.serve("/cgn.pth", whole(BODY))
    catalog = catalog_of(Asset("cgn.pth", {}, (url,)))
    fetch(tmp_path, catalog=catalog)
    assert f"sha256 {sha256(BODY)} (no published sha256" in capsys.readouterr().out
    assert fetch(tmp_path, catalog=catalog).kept == 1 and len(origin.requests) == 1
    assert fetch(tmp_path, force=True, catalog=catalog).fetched == 1 and len(origin.requests) == 2


def test_groups_default_to_all_but_the_imagenet_teacher_and_unknown_ones_are_listed():
    assert [group.folder for group in CATALOG.select([])] == ["teachers/cgn-mnist", "mnist", "textures"]
    assert CATALOG.select(["cgn-imagenet"])[0].assets[0].name == "cgn.pth"
    assert "allowed: cgn-mnist, mnist, textures, cgn-imagenet" in one_line_error(lambda: CATALOG.select(["x"]))


# --from: the real catalog's names, with bytes of the test's own, so the name search is the one CI relies on.

def fake_bytes(group: Group, item: Asset) -> bytes:
    return f"{group.folder}/{item.name}".encode()


FAKE = dataclasses.replace(CATALOG, groups={
    key: dataclasses.replace(group, assets=tuple(
        dataclasses.replace(item, accepted={sha256(fake_bytes(group, item)): "fake"}) for item in group.assets))
    for key, group in CATALOG.groups.items()})
FAKE_ASSETS = [(group, item) for group in FAKE.select([]) for item in group.assets]
Layout = Callable[[Group, Asset], str]


def defaults_layout(group: Group, item: Asset) -> str:
    return f"{group.folder}/{item.name}"


def origins_layout(group: Group, item: Asset) -> str:
    """Where a clone of the CGN repository has it (its path at the pinned commit); MNIST as on the mirrors."""
    url = item.urls[0]
    return url.split(f"{CGN_COMMIT}/", 1)[1] if CGN_COMMIT in url else url.rsplit("/", 1)[1]


def ci_layout(group: Group, item: Asset) -> str:
    return f"data/mnist-test-half/{item.name}" if group.folder == "mnist" else defaults_layout(group, item)


def make_source(folder: Path, layout: Layout) -> Path:
    for group, item in FAKE_ASSETS:
        path = folder / layout(group, item)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_bytes(group, item))
        path.chmod(0o444)  # as read-only as CI's folder: the copies must still be files of their own
    return folder


@pytest.mark.parametrize("layout", [defaults_layout, origins_layout, ci_layout])
def test_from_a_local_folder_in_any_layout(tmp_path, layout):
    source = make_source(tmp_path / "source", layout)
    root = tmp_path / "project"
    assert fetch(root, source=source, catalog=FAKE).summary() == f"fetched {len(FAKE_ASSETS)}, kept 0 already present"
    for group, item in FAKE_ASSETS:
        copy = root / group.folder / item.name
        assert copy.read_bytes() == fake_bytes(group, item)
        assert not copy.is_symlink() and copy.stat().st_mode & stat.S_IWUSR


def test_from_a_folder_that_lacks_a_file_names_what_was_looked_for(tmp_path):
    source = make_source(tmp_path / "source", origins_layout)
    (source / origins_layout(*FAKE_ASSETS[0])).unlink()  # the colored teacher's ckp.pth
    message = one_line_error(lambda: fetch(tmp_path / "project", ["cgn-mnist"], source, catalog=FAKE))
    # The other two ckp.pth were tried (and refused by their sha256) for the missing one.
    assert "no file named colored_mnist.pth or ckp.pth with an accepted sha256" in message
    assert str(tmp_path / "project/teachers/cgn-mnist/colored_mnist.pth") in message
    assert "no file named t10k-images-idx3-ubyte.gz below it" in one_line_error(
        lambda: fetch(tmp_path / "project", ["mnist"], tmp_path / "source/mnists", catalog=FAKE))


runner = CliRunner()


@pytest.mark.parametrize("args, expected", [
    (["fetch", "textures", "bogus"], "not a group: 'bogus'; allowed: cgn-mnist, mnist, textures, cgn-imagenet"),
    (["fetch", "--from", "/nonexistent"], "--from /nonexistent: not a folder"),
])
def test_cli_errors_are_one_line_with_exit_code_2(args, expected):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {expected}")


def test_cli_refuses_a_wrong_teacher_in_place_without_touching_the_network(tmp_path):
    wrong = tmp_path / "teachers/cgn-mnist/colored_mnist.pth"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"a checkpoint of someone else's")
    result = runner.invoke(app, ["fetch", "cgn-mnist", "--root", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"error: {wrong} is in place with sha256" in result.output and "--force" in result.output


def test_the_real_files_pass_the_real_catalog_through_the_cli(real_data, tmp_path):
    """The CI machine's layout, made of links to the fetched files: copied as files of their own, and kept on a
    second run."""
    source = tmp_path / "source"
    fetched = {"cgn-mnist": real_data.cgn_mnist, "mnist": real_data.mnist, "textures": real_data.textures}
    for key in CATALOG.defaults:
        group = CATALOG.groups[key]
        for item in group.assets:
            link = source / ci_layout(group, item)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(fetched[key] / item.name)
    root = tmp_path / "project"
    first = runner.invoke(app, ["fetch", "--from", str(source), "--root", str(root)])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == "fetched 25, kept 0 already present"
    assert not any(path.is_symlink() for path in root.rglob("*"))
    again = runner.invoke(app, ["fetch", "--root", str(root)])
    assert again.output.splitlines()[-1] == "fetched 0, kept 25 already present"
