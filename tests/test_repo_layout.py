"""The fixed top-level layout, README/CI agreement, and the rule that encoding/ and submission/ never load Paddle."""

import ast
import subprocess
import sys

import pytest

LAYOUT = ["infra", "encoding", "runtime", "imagedata", "supernet", "evaluate", "submission", "search", "tests",
          "configs", "bench", "docs", "data"]
FILES = [".ci/run", "requirements.txt", "requirements-apt.txt", "install.sh", "README.md"]
PADDLE_FREE = ["infra", "encoding", "submission"]


def _bash_blocks(text):
    """Non-empty lines of each ```bash block, in order."""
    lines, blocks, i = text.splitlines(), [], 0
    while "```bash" in lines[i:]:
        start = lines.index("```bash", i) + 1
        end = lines.index("```", start)
        blocks.append([line for line in lines[start:end] if line.strip()])
        i = end + 1
    return blocks


def _command_lines(script):
    return [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_the_main_job_then_the_test_command_ci_runs(repo_root):
    main_job, tests = _bash_blocks((repo_root / "README.md").read_text(encoding="utf-8"))[:2]
    assert len(main_job) == 1 and len(tests) == 1, f"one command per set-up block, got {main_job} and {tests}"
    assert "demo.py --setup" in main_job[0] and main_job[0].startswith("python3 -m venv .venv")
    ci = _command_lines((repo_root / ".ci" / "run").read_text(encoding="utf-8"))
    assert [line for line in ci if line.startswith(tests[0].strip() + " 2>&1 | tee ")], (tests[0], ci)
    assert ci[-1].startswith("python3 .ci/check_skips.py")
    assert "pytest" in tests[0] and tests[0].startswith("bash install.sh && ")


def test_ci_fails_on_a_skip_not_allowed(repo_root, tmp_path):
    output = tmp_path / "pytest.txt"
    output.write_text("...s\n=== short test summary info ===\n"
                      "SKIPPED [1] tests/test_samplers.py:154: paddle.distributed.launch cannot place 2 processes "
                      "on a 1-GPU CUDA build\n")
    check = [sys.executable, str(repo_root / ".ci" / "check_skips.py"), str(output)]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    with output.open("a") as f:
        f.write("SKIPPED [3] tests/test_evaluate_cli.py:21: Fashion-MNIST not installed at /usr/share/datasets\n")
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "unexpected skip: SKIPPED [3] tests/test_evaluate_cli.py:21: Fashion-MNIST not installed" in proc.stderr


def test_the_kit_ships_the_challenge_list_and_never_reads_beside_itself(repo_root):
    import hashlib

    data = (repo_root / "data" / "CVPR_2022_NAS_Track1_test.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == "d349a45a6d0b8b634dd80f453ef54117"
    tracked = subprocess.run(["git", "ls-files"], cwd=repo_root, capture_output=True, text=True).stdout.split()
    outside = "../" + "shared"  # written split so this file does not name it
    offenders = [f for f in tracked if (repo_root / f).is_file() and not f.endswith(".json")
                 and outside in (repo_root / f).read_text(encoding="utf-8", errors="replace")]
    assert not offenders, f"files that read the data beside the repository: {offenders}"


def test_ci_script_is_executable_from_anywhere(repo_root):
    run = repo_root / ".ci" / "run"
    assert run.stat().st_mode & 0o111
    assert run.read_text(encoding="utf-8").startswith("#!")
    assert 'cd "$(dirname "$0")/.."' in _command_lines(run.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", LAYOUT)
def test_top_level_directories(repo_root, name):
    assert (repo_root / name).is_dir(), f"{name}/ is part of the fixed layout"


@pytest.mark.parametrize("name", FILES)
def test_top_level_files(repo_root, name):
    assert (repo_root / name).is_file(), f"{name} is part of the fixed layout"


def _paddle_imports(path):
    """(line, statement) of every import of paddle in a Python file, static or through importlib/__import__."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "paddle" or n.startswith("paddle.")]
    return found


def test_scanner_finds_paddle_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os, paddle.nn as nn\nfrom paddle import io\nfrom .paddle import x\n"
                      "import importlib\nimportlib.import_module('paddle.vision')\nimport paddlex\n")
    assert _paddle_imports(sample) == [(1, "paddle.nn"), (2, "paddle"), (5, "paddle.vision")]


@pytest.mark.parametrize("package", PADDLE_FREE)
def test_package_source_never_imports_paddle(repo_root, package):
    files = sorted((repo_root / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {str(f.relative_to(repo_root)): hits for f in files if (hits := _paddle_imports(f))}
    assert not offenders, f"{package}/ must not import paddle: {offenders}"


def test_importing_encoding_does_not_load_paddle(repo_root):
    probe = (
        "import importlib, pkgutil, sys\n"
        "import encoding\n"
        "for m in pkgutil.iter_modules(encoding.__path__):\n"
        "    importlib.import_module('encoding.' + m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'paddle'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# Each package may import only the packages below it (data flows one way: code -> model -> scores ->
# submission); the model stack (runtime, imagedata, supernet) and submission are siblings, evaluate sits on both.
LAYERS = {"infra": set(), "encoding": {"infra"}, "runtime": {"infra", "encoding"},
          "imagedata": {"infra", "encoding", "runtime"}, "supernet": {"infra", "encoding", "runtime", "imagedata"},
          "submission": {"infra", "encoding"},
          "evaluate": {"infra", "encoding", "runtime", "imagedata", "supernet", "submission"},
          "search": {"infra", "encoding", "runtime", "imagedata", "supernet", "evaluate", "submission"}}


def _package_imports(path, own):
    """Top-level kit packages a file imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [own] if node.level else [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & set(LAYERS)
    return found - {own}


def test_scanner_finds_package_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os, evaluate.evaluator\nfrom . import x\n"
                      "def f():\n    from submission import metrics\n    import infra.errors as e\n")
    assert _package_imports(sample, "supernet") == {"evaluate", "submission", "infra"}


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_packages_import_only_the_layers_below_them(repo_root, package):
    offenders = {}
    for f in sorted((repo_root / package).rglob("*.py")):
        extra = _package_imports(f, package) - LAYERS[package]
        if extra:
            offenders[str(f.relative_to(repo_root))] = sorted(extra)
    assert not offenders, f"{package}/ may import only {sorted(LAYERS[package])}: {offenders}"
