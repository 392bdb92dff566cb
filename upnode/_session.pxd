# The fields of the class on every message's path, declared for the
# compiled build (see _framing.pxd): the .py beside it is the source.
cdef class DnodeSession:
    cdef dict __dict__
    cdef object __weakref__
    cdef public object _owner, limits, _maxDepth, remote, remoteReady, exposed, _targets, _exposedIds
    cdef public object sender, local, proxies, _proxyFor, _idOf, out, sendNow, receiving
    cdef public object _outgoing, _outgoingBytes, flushPast, closing, closed
