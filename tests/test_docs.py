"""The README is the front page and docs/ the reference: every command has a page, every link resolves, and
every option a command's --help shows is named on some page."""

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from sqabench.cli import app

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Each command's page (the README's command table links these).
PAGES = {
    "run": "run.md", "reproduce": "reproduce.md", "plot": "plot.md", "check": "ci.md", "floor": "method.md",
    "ceilings": "method.md", "variants": "models.md", "doctor": "gpu.md", "env": "gpu.md", "quality": "quality.md",
    "tokenize": "quality.md", "report": "results.md",
}  # fmt: skip
LINK = re.compile(r"\]\(([^)\s]+)\)")


def commands() -> dict:
    return typer.main.get_command(app).commands


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_every_command_has_its_page():
    assert set(commands()) == set(PAGES), "a command without a page in PAGES (or a page for no command)"
    for name, page in PAGES.items():
        text = (DOCS / page).read_text()
        assert f"sqabench {name}" in text, f"docs/{page} never names `sqabench {name}`"
        assert f"(docs/{page}" in README.read_text(), f"the README links no page for `sqabench {name}`"


@pytest.mark.parametrize(
    "page",
    [*pages(), ROOT / "results" / "README.md", ROOT / "plots" / "README.md"],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve()
        assert resolved.exists(), f"{page.name}: broken link {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {path}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_is_linked_from_the_readme():
    text = README.read_text()
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in text, f"docs/{page.name} is linked from nowhere on the front page"


def leaf_commands() -> list[str]:
    """Every command a user types, a group's commands as ``group command`` (``reproduce paper``)."""
    found = []
    for name, command in commands().items():
        inner = getattr(command, "commands", None)
        found += [f"{name} {sub}" for sub in inner] if inner else [name]
    return sorted(found)


@pytest.mark.parametrize("name", leaf_commands())
def test_every_option_of_a_command_is_named_on_some_page(name):
    help_text = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"}).output
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text)) - {"--help"}
    assert options, help_text
    documented = " ".join(page.read_text() for page in pages())
    missing = sorted(o for o in options if not re.search(rf"`[^`]*{re.escape(o)}(?![a-z0-9-])[^`]*`", documented))
    assert not missing, f"sqabench {name}: options named on no page (in backticks): {missing}"


@pytest.mark.parametrize("csv", ["results", "quality", "curves"])
def test_every_column_of_every_csv_is_documented(csv):
    """Each column a run writes is named, in backticks, in the table of its page (the results CSV's page also
    holds its order: ``test_results``)."""
    from sqabench.quality.rows import COLUMNS as QUALITY
    from sqabench.quality.rows import CURVE_COLUMNS
    from sqabench.speed.results import COLUMNS as RESULTS

    columns, page, heading = {"results": (RESULTS, "results.md", "# The results CSV"),
                              "quality": (QUALITY, "quality.md", "## What a run reports"),
                              "curves": (CURVE_COLUMNS, "quality.md", "-curves.csv`")}[csv]  # fmt: skip
    text = (DOCS / page).read_text()
    section = text[text.index(heading) :]
    table = section[section.index("| column |") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(\w+)`", table))
    assert not set(columns) - documented, f"docs/{page}: columns no table documents: {set(columns) - documented}"


def test_the_front_page_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_the_quality_pages_example_tables_are_what_report_prints_from_their_files():
    """docs/quality.md's example tables are the tool's own output: every row of each block is a row that
    `sqabench report` prints today from the results file the block names just above it (the sd column too)."""
    text = (DOCS / "quality.md").read_text()
    blocks = [m for m in re.finditer(r"```\n(┃ variant.*?)```", text, flags=re.S)]
    assert len(blocks) == 2  # MQAR and the King James Bible
    runner = CliRunner()
    for block in blocks:
        csv = re.findall(r"\(\.\./(results/[^)]*quality[^)]*(?<!-curves)\.csv)\)", text[: block.start()])[-1]
        printed = runner.invoke(app, ["report", str(ROOT / csv)], env={"COLUMNS": "400"})
        assert printed.exit_code == 0, printed.output
        shown = {line.rstrip() for line in printed.output.splitlines()}
        for line in block.group(1).splitlines():
            assert line.rstrip() in shown, (csv, line)
    confirmations = list(re.finditer(r"```\n(┃ first run's finding.*?)```", text, flags=re.S))
    assert len(confirmations) == 2  # each example's findings on fresh seeds
    for block in confirmations:
        first, fresh = re.findall(r"\(\.\./(results/[^)]*quality[^)]*(?<!-curves)\.csv)\)", text[: block.start()])[-2:]
        printed = runner.invoke(app, ["report", str(ROOT / fresh), "--confirm", str(ROOT / first)],
                                env={"COLUMNS": "400"})  # fmt: skip
        assert printed.exit_code == 0, printed.output
        shown = {line.rstrip() for line in printed.output.splitlines()}
        for line in block.group(1).splitlines():
            assert line.rstrip() in shown, (fresh, line)
