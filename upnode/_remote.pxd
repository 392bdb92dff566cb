# The fields of the classes on every message's path, declared for the
# compiled build (see _framing.pxd): the .py beside it is the source, whose
# __slots__ name the same fields.
cdef class Sender:
    cdef public object request

cdef class RemoteCallback:
    cdef object __weakref__
    cdef public object _sender, id
