"""mkdocs hook: pages that live outside docs/ join the site as they are, so that git holds one copy of each.

results/report.md is written by `python -m pipeline.report` and links its figures as `figures/<name>.png`; served
as report.md beside a figures/ folder of results/figures/*, those relative links resolve as they do on GitHub.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

# Site path -> project file (or folder, whose files keep their names under the site path).
EXTERNAL = {"report.md": "results/report.md", "figures": "results/figures", "changelog.md": "CHANGELOG.md"}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for site_path, path in _sources(config):
        # A missing source adds nothing: the nav's not-found warning then names the page (fatal under --strict).
        sources = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else []
        for file in sources:
            uri = f"{site_path}/{file.name}" if path.is_dir() else site_path
            files.append(File.generated(config, uri, abs_src_path=str(file)))
    return files


def on_serve(server, config: MkDocsConfig, builder):
    """`mkdocs serve` rebuilds when a page or figure from outside docs/ changes."""
    for _, path in _sources(config):
        if path.exists():
            server.watch(str(path))
    return server


def _sources(config: MkDocsConfig) -> list[tuple[str, Path]]:
    root = Path(config.config_file_path).parent
    return [(site_path, root / source) for site_path, source in EXTERNAL.items()]
