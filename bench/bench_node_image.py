"""How long the node-image comparison takes over many nodes (no cluster: synthetic nodes).

Reads this machine's kernel, OS, package list and kernel command line with the probe's own
command, copies them to N nodes in G config groups, drifts a few (another kernel, a package
version, a package gone, a kernel parameter changed), then times
``nodeimage.differences`` and ``nodeimage.parameter_differences`` — what the L1 nodes suite
computes once per run — and checks the drifted nodes are the ones named.

    .venv/bin/python bench/bench_node_image.py --nodes 1000 --groups 2
"""

from __future__ import annotations

import argparse
import subprocess
import time

from pytest_hpcvalidate.probes import nodeimage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    base = nodeimage.parse("n0", subprocess.run(["bash", "-c", nodeimage.COMMAND], capture_output=True,
                                                text=True, check=True).stdout)
    names = [f"n{i}" for i in range(1, args.nodes + 1)]
    images = {n: nodeimage.NodeImage(n, base.kernel, base.os, base.tool, dict(base.packages), base.cmdline)
              for n in names}
    groups = {n: f"compute[{i % args.groups}]" for i, n in enumerate(names)}
    some_package = sorted(base.packages)[0]
    drifted = {
        names[0]: nodeimage.NodeImage(names[0], "6.1.0-99-amd64", base.os, base.tool, dict(base.packages), base.cmdline),
        names[1]: nodeimage.NodeImage(names[1], base.kernel, base.os, base.tool,
                                      {**base.packages, some_package: "0.0-drift"}, base.cmdline),
        names[2]: nodeimage.NodeImage(names[2], base.kernel, base.os, base.tool,
                                      {p: v for p, v in base.packages.items() if p != some_package}, base.cmdline),
        names[3]: nodeimage.NodeImage(names[3], base.kernel, base.os, base.tool, dict(base.packages),
                                      base.cmdline.replace(" ", " hugepages=512 ", 1)),
    }
    images.update(drifted)

    for what, compare in (("software", nodeimage.differences), ("kernel parameters", nodeimage.parameter_differences)):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            found = compare(images, groups)
            times.append(time.perf_counter() - start)
        expected = set(names[:3]) if compare is nodeimage.differences else {names[3]}
        assert set(found) == expected, f"{what}: named {sorted(found)}, not {sorted(expected)}"
        print(f"{what}: {args.nodes} nodes, {len(base.packages)} packages, "
              f"{len(nodeimage.kernel_parameters(base.cmdline))} kernel parameters, {args.groups} groups: "
              f"best {min(times):.3f} s, worst {max(times):.3f} s of {args.repeat}")


if __name__ == "__main__":
    main()
