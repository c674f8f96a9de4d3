"""Constrained scalar types shared by both config formats, with the words used in errors.

Each pattern carries a human description; the error formatter prints that instead of a
regular expression (``"is not a PCI address like 0000:65:00.0"``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

#: pattern -> what an operator should read when a value does not match it
PATTERN_WORDS: dict[str, str] = {}


def _pattern(regex: str, words: str, **kw) -> object:
    PATTERN_WORDS[regex] = words
    return StringConstraints(pattern=regex, **kw)


SysctlName = Annotated[
    str, _pattern(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$",
                  "a sysctl name with dots, as `sysctl -a` prints it (e.g. vm.zone_reclaim_mode)")
]

ModuleName = Annotated[
    str, _pattern(r"^[A-Za-z0-9_-]+$", "a kernel module name, as lsmod prints it (e.g. nvidia_peermem)")
]

TaintLetters = Annotated[
    str, _pattern(r"^[PFSRMBUDAWCIOELKXTN]*$", "kernel taint letters such as BDLM (P F S R M B U D A W C I O E L K X T N)")
]

ClusterName = Annotated[
    str,
    _pattern(
        r"^[a-z][a-z0-9-]{0,23}$",
        "a cluster name: lower-case letters, digits and '-', starting with a letter, at most 24 characters",
    ),
]
NodeName = Annotated[
    str,
    _pattern(
        r"^[a-z][a-z0-9-]{0,31}$",
        "a node name: lower-case letters, digits and '-', starting with a letter, at most 32 characters",
    ),
]
UserName = Annotated[
    str,
    _pattern(
        r"^[a-z_][a-z0-9_-]{0,31}$",
        "a user name: lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters",
    ),
]
BridgeName = Annotated[
    str,
    _pattern(r"^[A-Za-z0-9_.-]{1,15}$", "a Linux interface name of 1-15 letters, digits, '_', '.', '-'"),
]
PciAddress = Annotated[
    str, _pattern(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$", "a PCI address like 0000:65:00.0")
]
HexId = Annotated[str, _pattern(r"^[0-9a-fA-F]{4}$", "a 4-digit hex id like 10de")]
AbsPath = Annotated[str, _pattern(r"^/", "an absolute path (starting with /)")]
SlurmTime = Annotated[
    str,
    _pattern(
        r"^(UNLIMITED|INFINITE|(\d+-)?\d{1,2}(:\d{2}){0,2}|\d+)$",
        "a Slurm time limit like 1:00:00, 2-00:00:00, 30 or UNLIMITED",
    ),
]
FileMode = Annotated[str, _pattern(r"^0[0-7]{3}$", "an octal file mode like 0755")]
Tag = Annotated[str, _pattern(r"^[a-zA-Z0-9_-]+$", "a tag of letters, digits, '_' and '-'")]
Sha256 = Annotated[str, _pattern(r"^[0-9a-f]{64}$", "a sha256 hex digest (64 lower-case hex digits)")]
GresType = Annotated[
    str, _pattern(r"^[a-z0-9_]{1,32}$", "a GRES type of lower-case letters, digits and '_' (e.g. h100)")
]
SlurmFeature = Annotated[
    str, _pattern(r"^[A-Za-z][A-Za-z0-9_.+-]{0,63}$",
                  "a Slurm node feature: a letter, then letters, digits, '_', '.', '+' or '-' (e.g. h100, ib-hdr)")
]
Version = Annotated[str, _pattern(r"^\d+(\.\d+){0,3}$", "a version like 1.4.2")]

PositiveInt = Annotated[int, Field(ge=1)]


def _text_only(words: str):
    def check(value):
        if isinstance(value, str):
            return value
        if isinstance(value, (IPv4Address, IPv4Network)):
            return value
        raise ValueError(f"{value!r} is not {words} (write it as a string)")

    return BeforeValidator(check)


IPv4Net = Annotated[IPv4Network, _text_only("an IPv4 network like 10.77.0.0/24")]
IPv4Addr = Annotated[IPv4Address, _text_only("an IPv4 address like 10.77.0.11")]
HttpUrl = Annotated[str, _pattern(r"^https?://[^/\s:]+(:\d{1,5})?/?$", "an http(s) URL of a host and port like http://mon01:9090")]
MetricName = Annotated[str, _pattern(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                                     "a Prometheus metric or alert name: letters, digits, '_' and ':', not starting with a digit")]
