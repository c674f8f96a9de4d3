"""Degraded copies of the recorded H100 outputs: each differs from the recording in exactly
the fault it stands for, in both formats (NVML JSON and ``nvidia-smi -q -x``), so a check is
proven against both parsers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

H100 = Path(__file__).resolve().parents[2] / "fixtures" / "gpu" / "h100"
NODE = "vm"                     # the recorded node's name
BUS = "00000000:00:06.0"        # the recorded GPU's bus id


def nvml_text(gpu: dict | None = None, top: dict | None = None, drop_gpu: bool = False) -> str:
    """The recorded ``nvml.json`` with ``gpu`` fields replaced in its GPU and ``top`` fields at
    the top level; ``drop_gpu``: the GPU is gone (count 0)."""
    doc = json.loads((H100 / "nvml.json").read_text())
    doc.update(top or {})
    doc["gpus"][0].update(gpu or {})
    if drop_gpu:
        doc["gpus"], doc["count"] = [], 0
    return json.dumps(doc)


def smi_text(gpu: dict[str, str] | None = None, top: dict[str, str] | None = None, drop_gpu: bool = False) -> str:
    """The recorded ``nvidia-smi -q -x`` with element texts replaced (paths below ``<gpu>``
    in ``gpu``, below the root in ``top``); a path that does not exist is an error."""
    root = ET.fromstring((H100 / "nvidia-smi-q.xml").read_text())
    gpu_el = root.find("gpu")
    for base, changes in ((gpu_el, gpu or {}), (root, top or {})):
        for path, text in changes.items():
            el = base.find(path)
            assert el is not None, f"no <{path}> in the recorded XML"
            el.text = text
    if drop_gpu:
        root.remove(gpu_el)
        root.find("attached_gpus").text = "0"
    return ET.tostring(root, encoding="unicode")


def sysfs_text(replace: dict[str, str] | None = None, drop_gpu: bool = False) -> str:
    """The recorded sysfs listing with lines of the GPU's block replaced (``driver=nvidia`` →
    ``driver=vfio-pci``), or without the GPU's block."""
    text = (H100 / "sysfs-pci.txt").read_text()
    head, sep, rest = text.partition("== /sys/bus/pci/devices/0000:00:06.0\n")
    block, blank, tail = rest.partition("\n\n")
    for old, new in (replace or {}).items():
        assert old in block, f"{old!r} is not in the recorded GPU block"
        block = block.replace(old, new)
    return head + ("" if drop_gpu else sep + block) + blank + tail
