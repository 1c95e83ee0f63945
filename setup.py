"""Lists the compiled extension; everything else lives in pyproject.toml.

``HYPERNODES_NO_EXTENSIONS=1`` at build time skips the extension and produces a
pure-Python package (the ``_sched_py`` core is then used at run time).
"""

import os

from setuptools import Extension, setup

if os.environ.get("HYPERNODES_NO_EXTENSIONS", "") not in ("", "0"):
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("hypernodes._sched", ["src/hypernodes/_sched.pyx"])],
        build_dir="build",  # generated .c stays out of src/ and out of the wheel
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)
