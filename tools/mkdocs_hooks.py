"""mkdocs hooks: the pages that must not drift are rendered from their sources at build time.

* ``index.md`` is the README (one front page for GitHub and the site); its links
  into ``docs/`` are rewritten to be relative to the site.
* ``reference/config.md`` and ``reference/cli.md`` are rendered fresh by
  ``tools/docs_reference.py`` (from the config schema and the CLI parser), so the
  site is right even before the committed copies are regenerated; the test
  ``tests/test_docs_config.py`` keeps the committed copies in step for GitHub readers.
* Links to files outside ``docs/`` (``../examples/x.py``) point at the repository,
  where those files are.

Hooks are loaded by path, so ``tools/`` needs no package; the sibling module is
loaded the same way.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPO = "https://github.com/tierwise/tierwise/blob/main/"
_OUTSIDE = re.compile(r"\]\(\.\./((?:examples|benchmarks|src|tests|tools)/[^)]*)\)")


def _reference() -> ModuleType:
    if "docs_reference" not in sys.modules:
        sys.path.insert(0, str(ROOT / "src"))
        spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "tools" / "docs_reference.py")
        if spec is None or spec.loader is None:
            raise ImportError("tools/docs_reference.py could not be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules["docs_reference"] = module
        spec.loader.exec_module(module)
    return sys.modules["docs_reference"]


def readme_as_index(text: str) -> str:
    """The README with its ``docs/…`` links made relative to the site root."""
    return re.sub(r"\]\(docs/", "](", text)


def on_files(files: Any, config: Any) -> Any:
    """Add ``index.md``, generated from the README (there is no docs/index.md to drift)."""
    from mkdocs.structure.files import File

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=readme_as_index(readme)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Render the generated reference pages fresh; point outside links at the repository."""
    ref = _reference()
    name = page.file.src_uri
    if name == "reference/config.md":
        markdown = ref.render_config()
    elif name == "reference/cli.md":
        markdown = ref.render_cli()
    return _OUTSIDE.sub(lambda m: f"]({REPO}{m.group(1)})", markdown)
