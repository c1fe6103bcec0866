"""The README's Python API section runs as written (from another folder, the repository on the path) and
says what it claims: the slice and the export agree, the oracle scores both codes."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def api_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 4)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one python block"
    return blocks[0]


def test_the_readme_api_example_runs_as_written(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", api_block()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    diff = float(lines[0].split(":")[1])
    assert diff < 1e-4, lines[0]
    scores = [line for line in lines if line.startswith("top-1 ")]
    assert len(scores) == 2 and all("recalibrate BN" in line for line in scores), proc.stdout
    assert (tmp_path / "supernet.pdparams").is_file()


def test_moved_entry_points_say_where_the_command_went():
    for module, where in (("supernet.train", "train_supernet.sh"), ("supernet.data.glyphs", "imagedata.glyphs"),
                          ("supernet.standalone", "pretrain.py")):
        proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and where in proc.stderr, (module, proc.returncode, proc.stderr)
