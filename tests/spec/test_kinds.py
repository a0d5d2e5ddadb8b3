import pytest

from slicebox.pool.kinds import get_kind, kind_from_nvml_name


def test_mig_geometry_of_a100_80gb() -> None:
    kind = get_kind("A100-80GB")
    assert [p.name for p in kind.mig_profiles] == [
        "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    assert kind.mig_profile("1g.10gb").max_instances == 7
    assert kind.mig_profile("3g.40gb").starts == (0, 4)


def test_h200_profile_names_round_half_up() -> None:
    assert [p.name for p in get_kind("H200").mig_profiles][3] == "3g.71gb"


def test_unknown_profile_and_kind_list_valid_names() -> None:
    with pytest.raises(KeyError, match="valid: 1g.5gb"):
        get_kind("A100-40GB").mig_profile("1g.10gbx")
    with pytest.raises(KeyError, match="valid kinds: H100"):
        get_kind("B300")


def test_nvml_names_map_to_kinds() -> None:
    assert kind_from_nvml_name("NVIDIA H100 80GB HBM3", 79.6).name == "H100"
    assert kind_from_nvml_name("NVIDIA A100-SXM4-40GB", 39.4).name == "A100-40GB"
    assert kind_from_nvml_name("NVIDIA A100 80GB PCIe", 79.2).name == "A100-80GB"
    assert kind_from_nvml_name("NVIDIA A10", 22.5).name == "A10"
    assert kind_from_nvml_name("Tesla V100-SXM2-32GB", 31.7).name == "V100-32GB"
    assert kind_from_nvml_name("Some Future GPU", 10) is None


def test_precision_fallback() -> None:
    t4 = get_kind("T4")
    assert t4.peak("tf32") == t4.peak("fp32")
    assert t4.peak("bf16") is None
