"""The README's Python examples run as written.

Blocks fenced ```python run, each on its own unless its first line says that it continues the
example above; a block fenced ```py (the cluster recipe, which needs several hosts) is shown, not
run.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python examples"
    # Each block runs as shown, in a namespace of its own, unless it says that it continues the
    # one before: then it runs after it, in the same namespace, as a reader would run them.
    namespace: dict = {}
    for block in blocks:
        if not block.startswith("# Continues"):
            namespace = {}
        exec(compile(block, str(README), "exec"), namespace)
