"""DLPack tensors made by hand (ctypes), so that CPU tests can hand customar what no framework would export: CUDA
device types without a GPU, fp8 codes, negative extents, inconsistent strides, vector lanes. Nothing ever reads the
data pointer: customar validates a tensor without touching its memory."""
import ctypes

CPU, CUDA, CUDA_HOST, ROCM, CUDA_MANAGED = 1, 2, 3, 10, 13
INT, UINT, FLOAT, BFLOAT, COMPLEX, BOOL = 0, 1, 2, 4, 5, 6
FLOAT8_E4M3FN, FLOAT8_E4M3FNUZ, FLOAT8_E5M2, FLOAT8_E5M2FNUZ = 10, 11, 12, 13


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Managed(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeTensor:
    """An object with __dlpack__ that exports the described tensor (a new unversioned capsule per call, no deleter:
    this object owns the shape and strides arrays and outlives every capsule it gives out)."""

    def __init__(self, shape, strides=None, code=FLOAT, bits=32, lanes=1, device_type=CUDA, device_id=0,
                 data=0x7F0000000000, byte_offset=0):
        n = len(shape)
        self._shape = (ctypes.c_int64 * max(n, 1))(*shape)
        self._strides = None if strides is None else (ctypes.c_int64 * max(n, 1))(*strides)
        self._managed = _Managed()
        t = self._managed.dl_tensor
        t.data, t.ndim, t.byte_offset = data, n, byte_offset
        t.device = _Device(device_type, device_id)
        t.dtype = _DType(code, bits, lanes)
        t.shape = ctypes.cast(self._shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = None if strides is None else ctypes.cast(self._strides, ctypes.POINTER(ctypes.c_int64))

    def __dlpack__(self, **kwargs):
        return _capsule_new(ctypes.addressof(self._managed), b"dltensor", None)

    def __dlpack_device__(self):
        return (self._managed.dl_tensor.device.device_type, self._managed.dl_tensor.device.device_id)
