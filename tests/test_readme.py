"""The Python examples of the README and the other documents run as written, in order, one namespace per document
(as a reader would paste them), and an output block (```text) right after an example is what that example prints."""
import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/design.md", "docs/references.md", "docs/custom-ops.md", "docs/targets.md",
             "training/README.md", "benchmarks/README.md", "CONTRIBUTING.md"]
BLOCK = re.compile(r"```(python|text)\n(.*?)```(?:\n)?", flags=re.S)


def examples(text: str) -> list[tuple[str, str | None]]:
    """(code, the printed output it shows or None) for each ```python block."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in BLOCK.finditer(text)]
    out = []
    for i, (kind, body, _, end) in enumerate(blocks):
        if kind != "python":
            continue
        follows = i + 1 < len(blocks) and blocks[i + 1][0] == "text" and blocks[i + 1][2] == end
        out.append((body, blocks[i + 1][1] if follows else None))
    return out


def test_the_readme_has_examples_and_shows_an_output():
    found = examples((ROOT / "README.md").read_text())
    assert found and any(shown is not None for _, shown in found)


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if (ROOT / d).exists()])
def test_python_examples_run_and_print_what_they_show(document):
    namespace = {"__name__": "readme"}
    for i, (code, shown) in enumerate(examples((ROOT / document).read_text())):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("error")  # an example that warns teaches the reader to ignore warnings
            exec(compile(code, f"{document} python block {i + 1}", "exec"), namespace)
        if shown is not None:
            assert printed.getvalue() == shown, f"{document} python block {i + 1} prints something else"
