// The differential peer for test_scrub_differential.py: dnode-protocol
// 0.2.2's own scrubber, one request a line on stdin, one answer a line on
// stdout.
//
// A value is described by a spec, built the same way on both sides:
//   plain JSON scalars and strings stand for themselves;
//   {"$": "nan" | "inf" | "-inf" | "-0"}        special numbers;
//   {"$": "fn", "id": k}                         function k (the same k is
//                                                the same function);
//   {"$": "list" | "tuple", "id": n, "items": [spec...]}
//   {"$": "dict", "id": n, "items": [[key, spec]...]}
//                                                containers (a tuple is an
//                                                array here);
//   {"$": "ref", "id": n}                        container n again: a cycle
//                                                if it is an ancestor, else
//                                                a shared reference.
//
// Requests:
//   {"op": "scrub", "case": c, "method": m, "spec": argsSpec}
//     answers {"case": c, "line": the request line dnode-protocol writes}
//   {"op": "check", "case": c, "method": m, "spec": argsSpec, "line": l}
//     decodes l with dnode-protocol's unscrub, and Node's own line for the
//     spec too, and answers {"case": c, "ok": bool, "why": text}: whether
//     both decode to the same value graph (functions as functions, cycles
//     as the same cycles).
var scrubber = require('dnode-protocol/lib/scrub');
var readline = require('readline');

function build(spec) {
    var containers = {};
    var functions = {};
    function go(s) {
        if (s === null || typeof s !== 'object') return s;
        switch (s.$) {
            case 'nan': return NaN;
            case 'inf': return Infinity;
            case '-inf': return -Infinity;
            case '-0': return -0;
            case 'fn':
                if (!functions[s.id]) functions[s.id] = function () {};
                return functions[s.id];
            case 'ref': return containers[s.id];
            case 'list':
            case 'tuple':
                var xs = [];
                containers[s.id] = xs;
                for (var i = 0; i < s.items.length; i++) xs.push(go(s.items[i]));
                return xs;
            case 'dict':
                var o = {};
                containers[s.id] = o;
                s.items.forEach(function (pair) {
                    Object.defineProperty(o, pair[0], {
                        value: go(pair[1]), enumerable: true, writable: true, configurable: true
                    });
                });
                return o;
        }
        throw new Error('bad spec ' + JSON.stringify(s));
    }
    return go(spec);
}

function scrubLine(method, args) {
    var s = scrubber([]).scrub(args);
    return JSON.stringify({
        method: method, arguments: s.arguments, callbacks: s.callbacks, links: s.links
    });
}

function decode(line) {
    var req = JSON.parse(line);
    return scrubber([]).unscrub(req, function (id) { return function () {}; });
}

// Whether a and b are the same graph: same shapes, same cycles (a
// container met again among its ancestors at the same depth), functions
// where functions are.
function same(a, b, pa, pb, path) {
    if (typeof a === 'function' || typeof b === 'function') {
        return typeof a === typeof b ? null : path + ': function against ' + typeof b;
    }
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
        if (a === b || (a !== a && b !== b)) return null;
        return path + ': ' + String(a) + ' against ' + String(b);
    }
    var ia = pa.indexOf(a), ib = pb.indexOf(b);
    if (ia !== ib) return path + ': cycle to depth ' + ia + ' against ' + ib;
    if (ia >= 0) return null;
    if (Array.isArray(a) !== Array.isArray(b)) return path + ': array against object';
    var ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
    if (ka.join('\u0000') !== kb.join('\u0000')) {
        return path + ': keys ' + JSON.stringify(ka) + ' against ' + JSON.stringify(kb);
    }
    pa.push(a); pb.push(b);
    for (var i = 0; i < ka.length; i++) {
        var why = same(a[ka[i]], b[ka[i]], pa, pb, path + '/' + ka[i]);
        if (why) return why;
    }
    pa.pop(); pb.pop();
    return null;
}

var rl = readline.createInterface({ input: process.stdin });
var out = [];
rl.on('line', function (text) {
    if (!text) return;
    var req = JSON.parse(text);
    var answer;
    try {
        var line = scrubLine(req.method, build(req.spec));
        if (req.op === 'scrub') {
            answer = { case: req.case, line: line };
        }
        else {
            var why = same(decode(line), decode(req.line), [], [], '');
            answer = { case: req.case, ok: !why, why: why };
        }
    }
    catch (e) {
        answer = { case: req.case, error: String(e && e.stack || e) };
    }
    out.push(JSON.stringify(answer));
    if (out.length >= 256) {
        process.stdout.write(out.join('\n') + '\n');
        out = [];
    }
});
rl.on('close', function () {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
});
