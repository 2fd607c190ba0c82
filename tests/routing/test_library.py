"""`routing` is a plain library: it imports without Django."""

import subprocess
import sys

BLOCK_DJANGO = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError("django is blocked in this test")
sys.meta_path.insert(0, Block())
import importlib, pkgutil, routing
for module in pkgutil.walk_packages(routing.__path__, "routing."):
    importlib.import_module(module.name)  # every module of the library
assert not any(m == "django" or m.startswith("django.") for m in sys.modules)
print("ok")
"""


def test_routing_imports_with_django_absent():
    out = subprocess.run([sys.executable, "-c", BLOCK_DJANGO], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_blocker_really_blocks_django():
    code = BLOCK_DJANGO.replace("import importlib, pkgutil, routing", "import django.conf, routing")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "django is blocked" in out.stderr
