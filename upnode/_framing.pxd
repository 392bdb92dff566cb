# The fields of the class on every received chunk's path, declared for the
# compiled build: Cython then reads and writes them as C fields, where it
# would look each up by name on every message.  Only Cython reads this
# file; the .py beside it is the source, unchanged, and runs as Python
# where the module is not compiled.  The instance keeps a __dict__ and
# weak references, as the Python class has (docs/decisions.md).
cdef class LineFramer:
    cdef dict __dict__
    cdef object __weakref__
    cdef public object _owner, _receiver, lineReceived, maxLength, _maxRate, _clock, _partial
    cdef public object linesReceived, chunksReceived, stopped, fullRead, _windowStart, _windowCount
