"""The README and docs a new user reads (issue 18 item 6): true paths, no links out of the repo."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)#\s]+)", path.read_text(encoding="utf-8"))


def test_readme_links_stay_in_the_repository_and_resolve():
    links = [u for u in _links(ROOT / "README.md") if "://" not in u]
    assert links
    for u in links:
        target = (ROOT / u).resolve()
        assert ROOT in target.parents or target == ROOT, f"README links outside the repo: {u}"
        assert target.exists(), f"README links a missing file: {u}"
    assert "../shared" not in (ROOT / "README.md").read_text(encoding="utf-8")


def test_docs_link_no_file_outside_the_repository():
    for page in (ROOT / "docs").glob("*.md"):
        for u in _links(page):
            if "://" in u:
                continue
            target = (page.parent / u).resolve()
            assert ROOT in target.parents, f"{page.name} links outside the repo: {u}"


def test_readme_names_where_the_quick_report_is():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "runs/quick/report/report.html" in text
    assert not re.search(r"runs/quick/report\.html", text)


def test_docs_name_distributions_that_exist():
    """docs/studies.md listed `jpeg` for `jpeg_compression`."""
    from prunescope.data.corruptions import CORRUPTIONS

    text = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8")
    listed = re.search(r"`<corruption>-<1..5>` \(([^)]*)\)", text).group(1)
    assert [n.strip() for n in listed.split(",")] == list(CORRUPTIONS)


def test_the_key_tables_of_docs_studies_md_are_the_spec_models():
    """docs/studies.md's key tables are generated from the models of prunescope.study.spec
    (issue 15 item 5): after changing a key, run ``PYTHONPATH=src python tests/test_docs.py``."""
    from prunescope.study.spec import DOC_TABLES, write_key_tables

    text = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8")
    assert write_key_tables(text) == text, "docs/studies.md is out of date: run " \
        "`PYTHONPATH=src python tests/test_docs.py`"
    for name, model in DOC_TABLES.items():  # every key of every table has its row
        block = text.split(f"<!-- keys:{name} -->")[1].split("<!-- /keys -->")[0]
        documented = {k for k, f in model.model_fields.items() if f.description}
        rows = block.strip().splitlines()[2:]
        assert {re.match(r"\| `([^`]+)`", row)[1] for row in rows} == documented


if __name__ == "__main__":  # regenerate the key tables of docs/studies.md from the spec models
    from prunescope.study.spec import write_key_tables

    page = ROOT / "docs" / "studies.md"
    page.write_text(write_key_tables(page.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the key tables of {page}")
