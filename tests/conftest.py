"""Suite-wide settings: a compiled test may never pass by running eager code."""
import logging

import pytest
import torch._dynamo
from torch._dynamo.utils import counters

# Every compiled Pipeline adds entries to the compile cache of augpipe's executor; past torch's limit (8) dynamo
# runs the function eagerly from then on, and a compiled == eager test would pass without testing the compiler.
# Where torch has the switch, hitting the limit raises at once (older releases spell it fail_on_cache_limit_hit).
for _name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, True)
        break


class _LimitHits(logging.Handler):
    """Collects dynamo's "hit config.recompile_limit" (older: "cache_size_limit") warnings, which every torch
    release logs when it gives up compiling a function, whether or not it can be told to raise instead."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        message = record.getMessage()
        if "hit config." in message:
            self.messages.append(message.splitlines()[0] + " " + " ".join(message.splitlines()[1:2]))


_hits = _LimitHits()
logging.getLogger("torch._dynamo.convert_frame").addHandler(_hits)


@pytest.fixture(autouse=True)
def _no_fallback_to_eager(request):
    """Fail the test in which dynamo fell back to eager code, on every torch version, or broke a compiled call
    into pieces: a graph break runs part of the call eagerly and compiles the rest again per pipeline, silently.
    A test whose own code breaks the graph on purpose (a Lambda torch cannot trace) says so with
    ``@pytest.mark.graph_breaks``."""
    _hits.messages.clear()
    counters["graph_break"].clear()
    yield
    if _hits.messages:
        pytest.fail("torch.compile fell back to eager code (the compiled path was not tested): "
                    + "; ".join(_hits.messages), pytrace=False)
    if counters["graph_break"] and request.node.get_closest_marker("graph_breaks") is None:
        pytest.fail(f"torch.compile broke the graph: {dict(counters['graph_break'])}", pytrace=False)


@pytest.fixture
def compiled_graphs():
    """Returns a function counting the graphs dynamo has compiled so far: a compiled call that made no new graph
    (a fresh pipeline always does) ran eager code or an old graph."""
    return lambda: counters["stats"]["unique_graphs"]
