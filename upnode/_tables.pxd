# The fields of the classes on every message's path, declared for the
# compiled build (see _framing.pxd): the .py beside it is the source.
cdef class LocalCallbacks:
    cdef dict __dict__
    cdef object __weakref__
    cdef public object entries, ids, resent, nextId, limit

cdef class RemoteProxies:
    cdef dict __dict__
    cdef object __weakref__
    cdef public object refs, pending, receiving, closing, _limit, _sender, _callLater, _due, _seconds
    cdef public object _timer, _lastCulls, _ripe, _waiting, _onProxyDied
