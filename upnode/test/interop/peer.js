// The Node reference peer (dnode 1.2.2, upnode 0.6.0) in the roles the
// interop tests need.  Every report is one JSON line on stdout.
//
//   node peer.js dnode-server PORT
//   node peer.js dnode-client PORT
//   node peer.js upnode-server PORT [KEY CERT]
//   node peer.js upnode-client PORT INTERVAL_MS [auth|plain] [tls CA]
'use strict';
var dnode = require('dnode');
var upnode = require('upnode');
var net = require('net');
var fs = require('fs');
var tls = require('tls');

function report(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
function liveCount(proto) { return proto.callbacks.local.filter(function (f) { return f; }).length; }

var mode = process.argv[2];
var port = parseInt(process.argv[3], 10);

function serverObject(remote, conn) {
    return {
        echo: function (value, cb) { cb(value); },
        twice: function (cb) {
            cb(1, function (v) { report({ event: 'reply', value: v }); });
            cb(2, function (v) { report({ event: 'reply', value: v }); });
        },
        mirror: function (value, cb) {
            report({ event: 'mirror', cyclic: value && value.me === value });
            cb(value);
        },
        cycle: function (cb) { var o = { n: 7 }; o.me = o; cb(o); },
        time: function (cb) { cb(new Date().toString()); },
        collect: function (cb) {
            global.gc();
            setTimeout(function () { global.gc(); setTimeout(function () { cb(); }, 50); }, 50);
        },
        tables: function (cb) { cb({ local: liveCount(conn.proto) }); },
        boop: 6
    };
}

if (mode === 'dnode-server') {
    var server = dnode(serverObject).listen(port, '127.0.0.1');
    server.on('listening', function () { report({ event: 'listening', port: server.address().port }); });
}
else if (mode === 'dnode-client') {
    var d = dnode({ hello: function (cb) { cb('from node'); } });
    d.on('remote', function (remote) {
        var out = {};
        var pending = 0;
        function step(name, fn) { pending++; fn(function (v) { out[name] = v; if (--pending === 0) finish(); }); }
        function finish() {
            remote.tables(function (t) {
                out.tables = t;
                report({ event: 'results', results: out });
                d.end();
                process.exit(0);
            });
        }
        step('data', function (done) {
            remote.echo({ n: [1, 2.5, -0.125, null, true], s: 'héllo ✓ 𝄞', e: {}, a: [] }, done);
        });
        step('count', function (done) {
            var seen = [];
            remote.twice(function (v) { seen.push(v); if (seen.length === 2) done(seen); });
        });
        step('cycle', function (done) {
            remote.cycle(function (o) { done(o.me === o && o.n === 7); });
        });
        step('mirror', function (done) {
            var o = { n: 3 }; o.me = o;
            remote.mirror(o, function (back) { done(back.me === back && back.n === 3); });
        });
        step('boop', function (done) { done(remote.boop); });
    });
    d.connect(port, '127.0.0.1');
}
else if (mode === 'upnode-server') {
    var sessions = 0;
    var cons = function (remote, conn) {
        var self = serverObject(remote, conn);
        self.auth = function (user, pass, cb) {
            if (user === 'moo' && pass === 'hax') {
                sessions++;
                report({ event: 'auth', sessions: sessions });
                cb(null, { beep: function (fn) { fn('boop at ' + Date.now()); } });
            }
            else cb('ACCESS DENIED');
        };
        return self;
    };
    var up = upnode(cons);
    var srv;
    if (process.argv[4]) {
        var opts = { key: fs.readFileSync(process.argv[4]), cert: fs.readFileSync(process.argv[5]) };
        srv = tls.createServer(opts, function (stream) {
            var one = upnode(cons);
            one.pipe(stream).pipe(one);
        });
        srv.listen(port, '127.0.0.1');
    }
    else srv = up.listen(port, '127.0.0.1');
    srv.on('listening', function () { report({ event: 'listening', port: srv.address().port }); });
}
else if (mode === 'upnode-client') {
    var interval = parseInt(process.argv[4], 10);
    var auth = process.argv[5] === 'auth';
    var opts = { ping: 200, timeout: 300, reconnect: 100 };
    if (process.argv[6] === 'tls') {
        var ca = fs.readFileSync(process.argv[7]);
        opts.createStream = function () {
            return tls.connect({ port: port, host: '127.0.0.1', ca: ca, servername: 'localhost' });
        };
    }
    var connectCb = auth ? function (remote, conn) {
        remote.auth('moo', 'hax', function (err, session) {
            if (err) report({ event: 'error', error: String(err) });
            else conn.emit('up', session);
        });
    } : undefined;
    var cup = connectCb
        ? upnode.connect(port, '127.0.0.1', opts, connectCb)
        : upnode.connect(port, '127.0.0.1', opts);
    cup.on('up', function () { report({ event: 'up' }); });
    cup.on('down', function () { report({ event: 'down' }); });
    cup.on('ping', function (ms) { report({ event: 'ping', ms: ms }); });
    cup.on('error', function (e) { report({ event: 'error', error: String(e) }); });
    var n = 0;
    setInterval(function () {
        var i = n++;
        cup(function (remote) {
            var method = auth ? remote.beep : remote.time;
            method(function (t) { report({ event: 'result', i: i, value: t }); });
        });
    }, interval);
}
else {
    console.error('unknown mode ' + mode);
    process.exit(2);
}
