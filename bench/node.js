// Node's upnode 0.6.0 side of the benchmark.
//   node bench/node.js server PORT
//   node bench/node.js lockstep|pipelined PORT CALLS WARMUP
//   node bench/node.js flush PORT CALLS
//   node bench/node.js queue-memory CALLS
'use strict';
var upnode = require('upnode');
var PAYLOAD = { id: 1, name: 'bench', tags: ['a', 'b'], ok: true, ratio: 0.5 };
var PIPELINE = 1000;
function report(o) { process.stdout.write(JSON.stringify(o) + '\n'); }
function now() { var t = process.hrtime(); return t[0] + t[1] / 1e9; }
var mode = process.argv[2];
if (mode === 'server') {
    var port = parseInt(process.argv[3], 10);
    var srv = upnode({ echo: function (value, cb) { cb(value); } }).listen(port, '127.0.0.1');
    srv.on('listening', function () { report({ event: 'listening', port: port, rss: process.memoryUsage().rss }); });
}
else if (mode === 'lockstep' || mode === 'pipelined') {
    // Make WARMUP calls, then time CALLS more.
    var port = parseInt(process.argv[3], 10), total = parseInt(process.argv[4], 10);
    var warmup = parseInt(process.argv[5], 10);
    var up = upnode.connect(port, '127.0.0.1', { ping: 0, reconnect: 50 });
    var sent = 0, done = 0, start = 0;
    // A fresh callback per call, as JavaScript code writes it.  (Reusing one
    // function races with dnode's culls: Node's own client then loses
    // replies, see the README.)
    function send() { sent++; up(function (remote) { remote.echo(PAYLOAD, function (v) { replied(v); }); }); }
    function replied() {
        done++;
        if (done === warmup) start = now();
        if (sent < warmup + total) send();
        else if (done === warmup + total) {
            var s = now() - start;
            report({ mode: mode, calls: total, seconds: s, rate: total / s });
            process.exit(0);
        }
    }
    up(function () {
        start = now();
        var n = Math.min(mode === 'lockstep' ? 1 : PIPELINE, warmup + total);
        for (var i = 0; i < n; i++) send();
    });
}
else if (mode === 'flush') {
    var port = parseInt(process.argv[3], 10), total = parseInt(process.argv[4], 10);
    var up = upnode.connect(port, '127.0.0.1', { ping: 0, reconnect: 10 });
    var done = 0, start = 0;
    function replied() {
        done++;
        if (done === total) { report({ mode: 'flush', calls: total, seconds: now() - start }); process.exit(0); }
    }
    for (var i = 0; i < total; i++) up(function (remote) { remote.echo(PAYLOAD, function (v) { replied(v); }); });
    up.on('remote', function () { start = now(); });
    report({ event: 'queued', queued: up.queue.length });
}
else if (mode === 'detect') {
    var port = parseInt(process.argv[3], 10);
    var up = upnode.connect(port, '127.0.0.1', {
        ping: parseFloat(process.argv[4]) * 1000, timeout: parseFloat(process.argv[5]) * 1000, reconnect: 3600000
    });
    up.on('up', function () { report({ event: 'up' }); });
    up.on('down', function () { report({ event: 'down', at: Date.now() / 1000 }); process.exit(0); });
}
else if (mode === 'idle') {
    var port = parseInt(process.argv[3], 10), clients = parseInt(process.argv[4], 10);
    var ping = parseFloat(process.argv[5]) * 1000;
    var ups = [], n = 0;
    for (var i = 0; i < clients; i++) {
        var up = upnode.connect(port, '127.0.0.1', { ping: ping, timeout: 5000, reconnect: 1000 });
        up.once('up', function () { if (++n === clients) report({ event: 'connected', clients: clients }); });
        ups.push(up);
    }
}
else if (mode === 'queue-memory') {
    var total = parseInt(process.argv[3], 10);
    var up = upnode.connect(1, '127.0.0.1', { ping: 0, reconnect: 3600000 });
    up.on('error', function () {});
    function shared(remote) { remote.echo(PAYLOAD, function () {}); }
    global.gc();
    var before = process.memoryUsage().rss;
    for (var i = 0; i < total; i++) up(shared);
    global.gc();
    var middle = process.memoryUsage().rss;
    for (var i = 0; i < total; i++) up(function (remote) { remote.echo(PAYLOAD, function () {}); });
    global.gc();
    var after = process.memoryUsage().rss;
    report({ mode: 'queue-memory', calls: total, shared: (middle - before) / total, fresh: (after - middle) / total });
    process.exit(0);
}
