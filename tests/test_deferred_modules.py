"""agentwatch.checks.deferred_modules: a stand-in binds at import, the real module loads at first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter (the modules it defers must not be imported yet) and return its output."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_deferred_module_loads_at_its_first_attribute_and_works_like_the_real_one():
    out = _run("""
        import sys
        from agentwatch.checks.deferred_modules import defer, is_loaded
        assert defer(["colorsys", "xml.dom.minidom", "no_such_module_anywhere"]) == ["colorsys", "xml.dom.minidom"]
        import colorsys as bound                      # what a library's module-level import does
        from xml.dom import minidom
        print(is_loaded("colorsys"), is_loaded("xml.dom.minidom"))
        print(bound.rgb_to_hsv(1.0, 0.0, 0.0))        # the first use imports it
        print(is_loaded("colorsys"), sys.modules["colorsys"] is not bound, bound.ONE_THIRD == 1 / 3)
        print(minidom.parseString("<a b='1'/>").documentElement.getAttribute("b"), is_loaded("xml.dom.minidom"))
        from colorsys import hsv_to_rgb               # later imports get the real module
        print(hsv_to_rgb(0.0, 1.0, 1.0))
    """)
    assert out.splitlines() == ["False False", "(0.0, 1.0, 1.0)", "True True True", "1 True", "(1.0, 0.0, 0.0)"]


def test_a_module_already_imported_is_left_alone():
    out = _run("""
        import colorsys
        from agentwatch.checks.deferred_modules import defer
        print(defer(["colorsys"]), type(colorsys).__name__)
    """)
    assert out.split() == ["[]", "module"]
