from twisted.application.service import ServiceMaker

upnodeServer = ServiceMaker(
    "upnode server", "upnode.tap", "Serve an object over upnode (dnode with heartbeats).", "upnode-server"
)
