"""Hostlist expand/compress: examples from Slurm's syntax, then properties over generated names."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hpcvalidate.hostlist import compress, expand, fold


@pytest.mark.parametrize(
    "expr, names",
    [
        ("c[01-04,07],gpu1", ["c01", "c02", "c03", "c04", "c07", "gpu1"]),
        ("gpu[001-003]", ["gpu001", "gpu002", "gpu003"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("z1,a1", ["z1", "a1"]),  # written order kept
        ("rack1-n[1-2]x", ["rack1-n1x", "rack1-n2x"]),
        ("ctl", ["ctl"]),
    ],
)
def test_expand_examples(expr, names):
    assert expand(expr) == names


@pytest.mark.parametrize(
    "names, expr",
    [
        (["c01", "c02", "c03", "c04", "c07", "gpu1"], "c[01-04,07],gpu1"),
        (["c3", "c1", "c2"], "c3,c[1-2]"),
        (["c08", "c09", "c10"], "c[08-10]"),
        (["c9", "c010"], "c9,c010"),
        (["a", "b1"], "a,b1"),
    ],
)
def test_compress_examples(names, expr):
    assert compress(names) == expr


@pytest.mark.parametrize("bad", ["", "c[1-", "c1-2]", "c[a-b]", "c[3-1]", "@group", "c1,,c2", "c 1"])
def test_expand_rejects_malformed(bad):
    with pytest.raises(ValueError):
        expand(bad)


prefixes = st.text(alphabet="abcdefghxyz-", min_size=1, max_size=4).filter(lambda s: s[0] != "-")
suffixes = st.sampled_from(["", "x", "-ib"])


@st.composite
def node_names(draw):
    prefix, suffix = draw(prefixes), draw(suffixes)
    width = draw(st.sampled_from([0, 2, 3]))
    n = draw(st.integers(0, 999 if width != 2 else 99))
    digits = f"{n:0{width}d}" if width else str(n)
    return f"{prefix}{digits}{suffix}"


@settings(max_examples=300, deadline=None)
@given(st.lists(node_names(), min_size=1, max_size=40, unique=True))
def test_expand_of_compress_is_identity(names):
    """Order and zero padding survive a round trip through the compact form."""
    assert expand(compress(names)) == names


@settings(max_examples=300, deadline=None)
@given(st.lists(node_names(), min_size=1, max_size=40, unique=True))
def test_compress_of_expand_is_identity_on_compact_forms(names):
    expr = compress(names)
    assert compress(expand(expr)) == expr


@settings(max_examples=200, deadline=None)
@given(prefixes, st.integers(1, 500), st.integers(0, 200), st.sampled_from([1, 2, 3, 4]))
def test_ranges_expand_to_the_right_count_and_padding(prefix, start, length, width):
    end = start + length
    if f"{start:0{width}d}".startswith("0") and len(str(end)) > width:
        # a padded range keeps one width (ClusterShell's rule): c[01-100] is an error, c[01-99],c100 is not
        with pytest.raises(ValueError):
            expand(f"{prefix}[{start:0{width}d}-{end:0{width}d}]")
        return
    expr = f"{prefix}[{start:0{width}d}-{end:0{width}d}]"
    names = expand(expr)
    assert len(names) == length + 1
    assert names[0] == f"{prefix}{start:0{width}d}" and names[-1] == f"{prefix}{end:0{width}d}"
    assert compress(names) == (expr if length else names[0])


def test_fold_gives_a_set_of_names_in_natural_order():
    assert fold({"c10", "c2", "c1", "gpu1"}) == "c[1-2,10],gpu1"
    assert fold(f"c{i}" for i in range(1000) if i != 7) == "c[0-6,8-999]"
    assert fold([]) == ""


@given(st.sets(st.integers(0, 5000), max_size=60), st.sampled_from(["c", "gpu", "node-"]))
def test_fold_loses_no_name_and_invents_none(numbers, prefix):
    names = {f"{prefix}{n}" for n in numbers}
    assert set(expand(fold(names))) == names if names else fold(names) == ""
