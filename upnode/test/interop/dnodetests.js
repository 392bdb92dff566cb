// Runs one of dnode 1.2.2's own test files (node_modules/dnode/test/) with
// our Python dnode in the middle, for test_dnode_suite.py.
//
//   node dnodetests.js TESTFILE UP_PORT DOWN_PORT
//   node dnodetests.js TESTFILE direct
//
// Where a test joins two dnode instances in one process
// (a.pipe(b).pipe(a)), each is connected to the Python side instead, over
// loopback: `a` to UP_PORT, `b` to DOWN_PORT, and the Python side joins
// them, exposing to each what the other exposes (so every message crosses
// our decoder and encoder, both ways).  Where a test connects to a port or
// a unix socket (dnode.connect, net.connect), it connects to DOWN_PORT, and
// the Python side connects to that port or socket as a dnode client.  Each
// connection to the Python side is announced on stdout first, by its local
// port, as one JSON line.  `direct` runs the file as it is, Node to Node.
//
// tape is not installed with dnode; a small stand-in with the assertions
// these files use reports the result as one JSON line: {"result": {...}}.
'use strict';
var Module = require('module');
var net = require('net');
var path = require('path');

var file = path.resolve(process.argv[2]);
var direct = process.argv[3] === 'direct';
var upPort = parseInt(process.argv[3], 10);
var downPort = parseInt(process.argv[4], 10);

function report(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

// -- the tape stand-in ---------------------------------------------------------

var results = { file: file, name: null, planned: null, passed: 0, failures: [], ended: false };

function finish() {
    if (finish.done) return;
    finish.done = true;
    report({ result: results });
    setTimeout(function () { process.exit(0); }, 20);
}

// Loose deep equality, as tape's; a pair met again (a cycle) is equal.
function deepEqual(a, b, seen) {
    if (a === b) return true;
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a == b;
    seen = seen || [];
    for (var j = 0; j < seen.length; j++) if (seen[j][0] === a && seen[j][1] === b) return true;
    seen.push([a, b]);
    var ka = Object.keys(a), kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    for (var i = 0; i < ka.length; i++) {
        if (!Object.prototype.hasOwnProperty.call(b, ka[i])) return false;
        if (!deepEqual(a[ka[i]], b[ka[i]], seen)) return false;
    }
    return true;
}

function show(v) {
    try { return JSON.stringify(v); } catch (e) { return String(v); }
}

function tape(name, fn) {
    results.name = name;
    var t = {};
    function check(ok, message) {
        if (ok) results.passed++;
        else results.failures.push(String(message));
        if (results.planned !== null && results.passed + results.failures.length >= results.planned) {
            results.ended = true;
            setTimeout(finish, 50);
        }
    }
    t.plan = function (n) { results.planned = n; };
    t.ok = function (v, m) { check(!!v, m || 'ok: ' + v); };
    t.notOk = function (v, m) { check(!v, m || 'notOk: ' + v); };
    t.equal = t.equals = function (a, b, m) { check(a === b, (m || 'equal') + ': ' + a + ' !== ' + b); };
    t.strictEqual = t.equal;
    t.notEqual = function (a, b, m) { check(a !== b, (m || 'notEqual') + ': ' + a); };
    t.deepEqual = t.same = function (a, b, m) {
        var ok = deepEqual(a, b);
        check(ok, ok ? '' : (m || 'deepEqual') + ': ' + show(a) + ' vs ' + show(b));
    };
    t.fail = function (m) { check(false, 'fail: ' + m); };
    t.end = function () { results.ended = true; setTimeout(finish, 50); };
    process.nextTick(function () { fn(t); });
}

var resolve = Module._resolveFilename;
Module._resolveFilename = function (request) {
    if (request === 'tape') return __filename;
    return resolve.apply(this, arguments);
};
module.exports = tape;

setTimeout(function () { results.failures.push('timed out'); finish(); }, 8000).unref();

// -- the Python side in the middle ---------------------------------------------

if (!direct) {
    var dnodeDir = path.dirname(require.resolve('dnode/package.json'));
    var Dnode = require(path.join(dnodeDir, 'lib', 'dnode.js'));
    var streamPipe = Dnode.prototype.pipe;
    var connect = net.connect;
    var seq = 0;

    var open = function (port, announce) {
        var socket = connect.call(net, port, '127.0.0.1');
        socket.on('connect', function () {
            announce.port = socket.localPort;
            report({ announce: announce });
        });
        socket.on('error', function () {});
        return socket;
    };

    var join = function (d, socket) {
        streamPipe.call(d, socket);
        socket.pipe(d);
    };

    Dnode.prototype.pipe = function (dest) {
        if (!(dest instanceof Dnode)) return streamPipe.apply(this, arguments);
        if (this._bridged === dest) return dest;  // the chain's second pipe
        this._bridged = dest;
        dest._bridged = this;
        var n = seq++;
        join(this, open(upPort, { kind: 'pipe-up', seq: n }));
        join(dest, open(downPort, { kind: 'pipe-down', seq: n }));
        return dest;
    };

    net.connect = net.createConnection = function (a, b) {
        var announce;
        if (typeof a === 'object' && a !== null) {
            announce = a.path ? { kind: 'unix', path: a.path } : { kind: 'tcp', target: Number(a.port) };
        }
        else if (typeof a === 'string' && !/^\d+$/.test(a)) announce = { kind: 'unix', path: a };
        else announce = { kind: 'tcp', target: Number(a) };
        return open(downPort, announce);
    };
}

require(file);
