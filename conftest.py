"""Repository-level conftest: keep pytest out of the folders that hold data, not tests.

The plugin itself is loaded through its ``pytest11`` entry point, so ``pytest --hpc-config``
works from any directory; nothing here is needed for that.
"""

collect_ignore = ["reports", "fixtures", "bench", "configs", "build"]
