"""The layout a newcomer walks: lib/'s layers (no module imports from a layer above its own), one
file name per module, and the maps of the READMEs, docs/extending.md and lib/__init__.py.
"""

from __future__ import annotations

import ast
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from builders import REPO_ROOT

LIB = REPO_ROOT / "lib"

# lib/'s layers, lowest first: a module may import from its own layer and those below, never from
# one above (function-level imports included). A module belongs to the layer of its longest prefix.
LAYERS = (
    ("foundation", ("lib.errors", "lib.io", "lib.hardware", "lib.versions", "lib.config", "lib.arguments",
                    "lib.stats", "lib.tex", "lib.fonts", "lib.prompts", "lib.architecture", "lib.memory")),
    # what every stage after training reads: a run folder's files, and the metrics eval.json holds
    ("records", ("lib.runs", "lib.evaluate.metrics")),
    ("data", ("lib.data",)),
    ("model", ("lib.model", "lib.tiny_model", "lib.standin")),
    ("train", ("lib.train",)),
    ("evaluate", ("lib.evaluate",)),
    ("summarize", ("lib.summarize",)),
    ("figures and report", ("lib.figures", "lib.report")),
    ("paper", ("lib.paper",)),
    ("using a run", ("lib.export", "lib.model_card", "lib.push", "lib.serve", "lib.serve_transformers", "lib.chat",
                     "lib.review")),
    ("operations", ("lib.gpus", "lib.slurm", "lib.make_variables", "lib.wheelhouse", "lib.config_cli")),
    ("bench", ("lib.bench", "lib.plan")),
    ("entry point", ("lib.cli", "lib.__main__", "lib")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(LIB.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The rank of the layer whose prefix names `module` most closely."""
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS in tests/test_layout.py"
    return max(matches)[1]


def imported_modules(path: Path) -> set[str]:
    """Every module of lib/ that the file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from lib.bench import gpu_check` imports the module lib.bench.gpu_check
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        else:
            continue
        found |= {name for name in names if name == "lib" or name.startswith("lib.")}
    return found


def test_every_module_of_lib_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, path in MODULES.items():
        for imported in sorted(imported_modules(path)):
            assert imported in MODULES, f"{module} imports {imported}, which is not a module of lib/"
            if layer_of(imported) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} "
                              f"({LAYERS[layer_of(imported)][0]})")
    assert upward == []


def test_the_layer_test_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def run():\n    from lib.bench import gpu_check\n    import lib.train\n", encoding="utf-8")
    assert imported_modules(source) == {"lib.bench.gpu_check", "lib.train"}


def test_no_two_modules_share_a_file_name():
    names = Counter(path.name for path in MODULES.values() if path.name not in ("__init__.py", "__main__.py"))
    assert [name for name, count in names.items() if count > 1] == []
    # nor two test files: pytest imports each by its file name (tests/ mirrors lib/'s folders)
    tests = Counter(path.name for path in (REPO_ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in tests.items() if count > 1] == []


# --- the maps: every folder, make target and command, and the module behind each command ------------

MAPS = {  # the file, and the text of its map
    "README.md": lambda text: section(text, "## 地图"),
    "README.en.md": lambda text: section(text, "## Map"),
    "docs/extending.md": lambda text: section(text, "## Map"),
    "lib/__init__.py": lambda text: ast.get_docstring(ast.parse(text)),
}


def section(markdown: str, heading: str) -> str:
    """The text under a `## ` heading, up to the next one."""
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end > 0 else None]


def folders() -> list[str]:
    """The repository's folders (those git tracks files in, at the top), models/ (which make fills)
    and lib/'s packages."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    top = {f"{line.split('/')[0]}/" for line in tracked.splitlines() if "/" in line}
    packages = {f"{module.replace('.', '/')}/" for module, path in MODULES.items() if path.name == "__init__.py"}
    return sorted(top | packages | {"models/"})


def make_targets() -> list[str]:
    """Every target of every make file with a `##` help line, as a user types it (exp-% as exp-<run>)."""
    from builders import MAKE_FILES, make_sections

    return [target.replace("%", "<run>") for path in MAKE_FILES for targets in make_sections(path).values()
            for target in targets]


@pytest.mark.parametrize("name", MAPS)
def test_each_map_names_every_folder_target_command_and_the_module_behind_each_command(name):
    from lib.cli import COMMANDS

    localized = {"README.md": "<实验>"}
    text = MAPS[name]((REPO_ROOT / name).read_text(encoding="utf-8"))
    missing = [folder for folder in folders() if folder not in text]
    missing += [f"make {target}" for target in make_targets()
                if f"`make {target.replace('<run>', localized.get(name, '<run>'))}" not in text]
    for command, (module, _) in COMMANDS.items():
        path = MODULES[module]
        shown_path = str(path.relative_to(REPO_ROOT).parent if path.name == "__init__.py" else
                         path.relative_to(REPO_ROOT)) + ("/" if path.name == "__init__.py" else "")
        missing += [f"`{command}`" for _ in [0] if f"`{command}`" not in text]
        missing += [shown_path for _ in [0] if shown_path not in text]
    assert missing == []
