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


def test_a_submodule_of_a_deferred_package_runs_once(tmp_path):
    """Importing a submodule of a package still deferred runs the submodule once (the parent's __path__ is known
    without loading it), and the package, once loaded, holds that same submodule."""
    package = tmp_path / "deferredpkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import sub\nLOADED = True\n")
    (package / "sub.py").write_text("import builtins\nbuiltins.sub_runs = getattr(builtins, 'sub_runs', 0) + 1\n"
                                    "class Thing:\n    pass\n")
    out = _run(f"""
        import builtins, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from agentwatch.checks.deferred_modules import defer, is_loaded
        assert defer(["deferredpkg"]) == ["deferredpkg"]
        import deferredpkg.sub
        from deferredpkg.sub import Thing
        print(builtins.sub_runs, is_loaded("deferredpkg"))
        import deferredpkg
        print(deferredpkg.LOADED, deferredpkg.sub.Thing is Thing, builtins.sub_runs)
    """)
    assert out.split() == ["1", "False", "True", "True", "1"]
