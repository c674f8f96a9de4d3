"""How long the node-image comparison takes over many nodes (no cluster: synthetic nodes).

Reads this machine's kernel, OS, package list and kernel command line with the probe's own
command, copies them to N nodes in G config groups, drifts a few (another kernel, a package
version, a package gone, a kernel parameter changed, older microcode, a sysctl changed, a DIMM lost), then
times ``nodeimage.differences``, ``parameter_differences``, ``firmware_differences`` and
``tunable_differences``, ``hardware_differences`` — what the L1 nodes suite computes once per run — and checks the
drifted nodes are the ones named.

    .venv/bin/python bench/bench_node_image.py --nodes 1000 --groups 2
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time

from pytest_hpcvalidate.probes import nodeimage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    command = nodeimage.COMMAND + nodeimage.tunables_command(nodeimage.DEFAULT_SYSCTLS)
    base = nodeimage.parse("n0", subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                                check=True).stdout)
    names = [f"n{i}" for i in range(1, args.nodes + 1)]
    images = {n: dataclasses.replace(base, node=n, packages=dict(base.packages)) for n in names}
    groups = {n: f"compute[{i % args.groups}]" for i, n in enumerate(names)}
    some_package = sorted(base.packages)[0]
    drifted = {
        names[0]: dataclasses.replace(base, node=names[0], kernel="6.1.0-99-amd64"),
        names[1]: dataclasses.replace(base, node=names[1], packages={**base.packages, some_package: "0.0-drift"}),
        names[2]: dataclasses.replace(base, node=names[2],
                                      packages={p: v for p, v in base.packages.items() if p != some_package}),
        names[3]: dataclasses.replace(base, node=names[3], cmdline=base.cmdline.replace(" ", " hugepages=512 ", 1)),
        names[4]: dataclasses.replace(base, node=names[4], microcode="0x1"),
        names[5]: dataclasses.replace(base, node=names[5], tunables={**base.tunables, "vm.swappiness": "1"}),
        names[6]: dataclasses.replace(base, node=names[6], memkb=str(int(base.memkb) * 15 // 16)),
    }
    images.update(drifted)

    comparisons = (("software", nodeimage.differences, names[:3]),
                   ("kernel parameters", nodeimage.parameter_differences, names[3:4]),
                   ("firmware", nodeimage.firmware_differences, names[4:5] if base.microcode else []),
                   ("tunables", nodeimage.tunable_differences, names[5:6]),
                   ("hardware", nodeimage.hardware_differences, names[6:7]))
    for what, compare, expected in comparisons:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            found = compare(images, groups)
            times.append(time.perf_counter() - start)
        assert set(found) == set(expected), f"{what}: named {sorted(found)}, not {sorted(expected)}"
        print(f"{what}: {args.nodes} nodes ({len(base.packages)} packages, "
              f"{len(nodeimage.kernel_parameters(base.cmdline))} kernel parameters, {len(base.tunables)} tunables), "
              f"{args.groups} groups: best {min(times):.3f} s, worst {max(times):.3f} s of {args.repeat}")


if __name__ == "__main__":
    main()
