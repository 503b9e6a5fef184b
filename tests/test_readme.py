"""The README's Python examples run as written.

Blocks fenced ```python run; a block fenced ```py (the cluster recipe, which needs several
hosts) is shown, not run.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python examples"
    # One namespace, as a reader runs them: later sections build on earlier ones.
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
