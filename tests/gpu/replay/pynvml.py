"""A replay of pynvml for the project's tests: answers from a recorded NVML JSON file (the
format of ``fixtures/gpu/h100/nvml.json``, path in ``HPCV_NVML_REPLAY``), so the NVML snippet
of ``probes/gpu.py`` runs its real code path here, where no GPU exists.

Only what the snippet calls is here, with pynvml's names, argument lists and constant values
(``tests/gpu/test_gpu_snippet.py`` checks them against the real nvidia-ml-py). A recorded
``"ERR <name>: <message>"`` is raised again; a field the recording lacks raises
NVMLError_NotSupported, as a GPU without the feature does.
"""

import json
import os
from types import SimpleNamespace

NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


_recording = {}


def _answer(record, key):
    value = record.get(key, "ERR NVMLError_NotSupported: Not Supported")
    if isinstance(value, str) and value.startswith("ERR "):
        name, _, message = value[4:].partition(": ")
        if name == "AttributeError":
            raise AttributeError(message)
        raise (NVMLError_NotSupported if name == "NVMLError_NotSupported" else type(name, (NVMLError,), {}))(message)
    return value


def nvmlInit():
    with open(os.environ["HPCV_NVML_REPLAY"]) as f:
        _recording.update(json.load(f))


def nvmlShutdown():
    pass


def nvmlSystemGetDriverVersion():
    return _answer(_recording, "driver")


def nvmlSystemGetCudaDriverVersion():
    return _answer(_recording, "cuda_driver")


def nvmlDeviceGetCount():
    return len(_recording["gpus"])


def nvmlDeviceGetHandleByIndex(index):
    return _recording["gpus"][index]


def _field(key, scale=None):
    def get(handle):
        value = _answer(handle, key)
        return round(value * scale) if scale else value
    return get


nvmlDeviceGetName = _field("name")
nvmlDeviceGetUUID = _field("uuid")
nvmlDeviceGetMinorNumber = _field("minor")
nvmlDeviceGetEccMode = _field("ecc_mode")
nvmlDeviceGetRetiredPagesPendingStatus = _field("retired_pages_pending")
nvmlDeviceGetRemappedRows = _field("remapped_rows")
nvmlDeviceGetCurrPcieLinkGeneration = _field("pcie_gen_cur")
nvmlDeviceGetCurrPcieLinkWidth = _field("pcie_width_cur")
nvmlDeviceGetMaxPcieLinkGeneration = _field("pcie_gen_max")
nvmlDeviceGetMaxPcieLinkWidth = _field("pcie_width_max")
nvmlDeviceGetPowerUsage = _field("power_w", 1000)            # NVML answers in mW
nvmlDeviceGetEnforcedPowerLimit = _field("power_limit_w", 1000)
nvmlDeviceGetPersistenceMode = _field("persistence")
nvmlDeviceGetComputeMode = _field("compute_mode")
nvmlDeviceGetMigMode = _field("mig_mode")
nvmlDeviceGetCurrentClocksEventReasons = _field("clocks_throttle_reasons")
nvmlDeviceGetPerformanceState = _field("pstate")


def nvmlDeviceGetPciInfo(handle):
    # real pynvml answers bytes in older releases: the snippet must decode them
    return SimpleNamespace(busId=_answer(handle, "pci_bus_id").encode(),
                           pciDeviceId=int(_answer(handle, "pci_device_id"), 16))


def nvmlDeviceGetMemoryInfo(handle):
    return SimpleNamespace(total=_answer(handle, "mem_total"), used=_answer(handle, "mem_used"))


def nvmlDeviceGetTotalEccErrors(handle, errorType, counterType):
    assert (errorType, counterType) == (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC)
    return _answer(handle, "ecc_uncorrected_volatile")


def nvmlDeviceGetTemperature(handle, sensor):
    assert sensor == NVML_TEMPERATURE_GPU
    return _answer(handle, "temp")
