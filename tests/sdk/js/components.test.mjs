// The six JavaScript example components (examples/js, built by examples/build-plugins), run
// under node: each is transpiled with jco and instantiated with preview2-shim (both installed
// in examples/js/node_modules by the build) and stub weir:connector imports, then driven
// through its exported interface with batches built by the SDK. This checks the components
// themselves, independently of the Weir host (tests/e2e runs them through `weir plugin run`).
//
// Skipped unless WEIR_EXAMPLE_PLUGINS names the directory examples/build-plugins wrote.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";

import { Batch, Builder, text, utf8 } from "../../../sdk/js/weir.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const MODULES = path.join(ROOT, "examples/js/node_modules");
const JCO = path.join(MODULES, ".bin/jco");
const SHIM = path.join(MODULES, "@bytecodealliance/jco/node_modules/@bytecodealliance/preview2-shim/dist/nodejs/index.js");
const BUILT = process.env.WEIR_EXAMPLE_PLUGINS;
const skip = !BUILT ? "WEIR_EXAMPLE_PLUGINS is not set (examples/build-plugins DIR, then export it)"
  : !fs.existsSync(JCO) || !fs.existsSync(SHIM) ? "examples/js/node_modules has no jco / preview2-shim (run examples/build-plugins)"
  : false;

// Node 20 compiles these modules only with this wasm feature (on by default from node 22).
v8.setFlagsFromString("--experimental-wasm-extended-const");

const OUT = fs.mkdtempSync(path.join(os.tmpdir(), "weir-js-components-"));
const logs = [];
const state = new Map();
let stateFull = false; // when set, state.set refuses, as the host does over its bounds
const WEIR = {
  log: { log: (level, message) => logs.push(`${level} ${message}`) },
  state: {
    get: (k) => state.get(k),
    set: (k, v) => { if (stateFull) return { tag: "err", val: "state is full" }; state.set(k, v); },
    delete: (k) => { state.delete(k); },
  },
};

// The exports of OUT/js-NAME.wasm, in a fresh instance.
async function instance(name) {
  const dir = path.join(OUT, name);
  if (!fs.existsSync(dir)) {
    execFileSync(JCO, ["transpile", path.join(BUILT, `js-${name}.wasm`), "-o", dir, "--instantiation", "async"], { stdio: "ignore" });
  }
  const shim = await import(SHIM);
  const mod = await import(path.join(dir, `js-${name}.js`));
  const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  const imports = new Proxy({}, {
    get(_, key) {
      const m = typeof key === "string" && /^(wasi|weir):([a-z-]+)\/([a-z-]+)/.exec(key);
      if (!m) return undefined;
      if (m[1] === "wasi") return shim[m[2]][camel(m[3])];
      const missing = (f) => () => { throw new Error(`stub weir:connector/${m[3]}.${f} called`); };
      return new Proxy(WEIR[m[3]] ?? {}, { get: (t, f) => (f in t ? t[f] : missing(String(f))) });
    },
  });
  return mod.instantiate((f) => fs.promises.readFile(path.join(dir, f)).then((b) => WebAssembly.compile(b)), imports);
}

const setPreopens = async (map) => (await import(SHIM)).filesystem._setPreopens(map);

function build(records) {
  const b = new Builder();
  for (const r of records) b.append(r);
  return b.finish();
}

const read = (bytes) => Array.from(new Batch(bytes), (r) => ({
  key: text(r.key), value: text(r.value), headers: r.headers.map(([n, v]) => [n, text(v)]),
  timestamp: r.timestamp, topic: r.topic, sourcePartition: text(r.sourcePartition), sourceOffset: text(r.sourceOffset),
}));

// The WIT error a call threw (jco wraps it in a ComponentError with the variant as payload).
function thrown(f) {
  try {
    f();
  } catch (e) {
    return e.payload ?? e;
  }
  assert.fail("did not throw");
}

test("js-identity: passthrough", { skip }, async () => {
  const t = (await instance("identity")).transformer;
  assert.deepEqual(t.describe(), { name: "identity", version: "0.2.0", kind: "transform", description: "Returns records unchanged", config: [] });
  t.open([]);
  const input = build([
    { key: "k0", value: '{"a":1}', headers: [["h", "v"], ["empty", null]], timestamp: 1700000000000 },
    { key: null, value: "plain text", timestamp: 5 },
    { key: "k2", value: null, headers: [["h", "v2"]], timestamp: 7 },
  ]);
  assert.deepEqual(t.apply(input), { tag: "passthrough" });
});

test("js-json-rewrite: renames, names the bad record, requires its config", { skip }, async () => {
  const t = (await instance("json-rewrite")).transformer;
  assert.deepEqual(thrown(() => t.open([["from", "name"]])), { tag: "invalid-config", val: { key: "to", message: "required" } });
  t.open([["from", "name"], ["to", "full_name"]]);
  const out = t.apply(build([
    { key: "a", value: '{"name":"ada","age":36}', timestamp: 1 },
    { key: "b", value: '{"age":1,"name":"bob","name":"twice"}', timestamp: 2 },
    { key: "c", value: null, timestamp: 3 },
  ]));
  assert.equal(out.tag, "replace");
  assert.deepEqual(read(out.val).map((r) => [r.key, r.value, r.timestamp]), [
    ["a", '{"full_name":"ada","age":36}', 1], ["b", '{"age":1,"full_name":"bob","name":"twice"}', 2], ["c", null, 3],
  ]);
  assert.deepEqual(thrown(() => t.apply(build([{ key: "a", value: '{"name":"ada"}' }, { key: "x", value: "[1,2]", timestamp: 4 }]))),
    { tag: "bad-record", val: { index: 1, message: "value is not a JSON object" } });
  assert.deepEqual(t.apply(build([{ value: '{"other":1}' }])), { tag: "passthrough" });
});

test("js-filter and js-add-header: select and replace", { skip }, async () => {
  const five = build([0, 1, 2, 3, 4].map((i) => ({ key: `k${i}`, value: `v${i}`, headers: [["h", String(i)]] })));
  const f = (await instance("filter")).transformer;
  f.open([]);
  const kept = f.apply(five);
  assert.equal(kept.tag, "select");
  assert.deepEqual(Array.from(kept.val), [0, 2, 4]);
  const a = (await instance("add-header")).transformer;
  a.open([]);
  const added = a.apply(five);
  assert.equal(added.tag, "replace");
  assert.deepEqual(read(added.val).map((r) => [r.key, r.headers]), [0, 1, 2, 3, 4].map((i) => [`k${i}`, [["h", String(i)], ["processed", "weir"]]]));
});

const counter = (i) => ({
  key: `k${i}`, value: `{"n":${i}}`, headers: [["source", "counter"]], timestamp: 1700000000000 + i,
  topic: "numbers", sourcePartition: "counter", sourceOffset: String(i),
});

test("js-counter-source: polls, acks, logs, resumes after the committed offset", { skip }, async () => {
  const s = (await instance("counter-source")).source;
  assert.deepEqual(thrown(() => s.open([["topic", "numbers"], ["count", "many"]], [])), { tag: "invalid-config", val: { key: "count", message: "not an integer" } });
  assert.deepEqual(s.taskConfigs([["topic", "numbers"]], 3), [[["topic", "numbers"]]]);
  s.open([["topic", "numbers"], ["count", "5"]], []);
  const got = [];
  for (let records = read(s.poll(2)); records.length > 0; records = read(s.poll(2))) {
    got.push(...records);
    s.ack([[utf8("counter"), utf8(records[records.length - 1].sourceOffset)]]);
  }
  s.close();
  assert.deepEqual(got, [0, 1, 2, 3, 4].map(counter));
  for (const offset of ["1", "3", "4"]) assert.ok(logs.includes(`info acked ${offset}`), logs.join("\n"));
  assert.ok(logs.includes("info closed"));
  assert.deepEqual(text(state.get("acked")), "4");
  const again = (await instance("counter-source")).source;
  again.open([["topic", "numbers"], ["count", "5"]], [[utf8("counter"), utf8("2")]]);
  assert.deepEqual(read(again.poll(10)), [counter(3), counter(4)]);
  // A refused state.set is logged as a warning, not a trap.
  stateFull = true;
  again.ack([[utf8("counter"), utf8("4")]]);
  stateFull = false;
  assert.equal(logs[logs.length - 1], "warn state is full");
});

test("js-file-sink: writes only on flush, into its granted directory; whole batches or nothing", { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(OUT, "out-"));
  const records = [
    { topic: "orders", partition: 1, offset: 10, key: "k0", value: "v0", timestamp: 1 },
    { topic: "orders", partition: 1, offset: 11, key: "k1", value: "v1", timestamp: 2 },
    { topic: "orders", partition: 0, offset: 3, key: null, value: "v2", timestamp: 3 },
  ];
  const upTo = [{ topic: "orders", partition: 0, offset: 3 }, { topic: "orders", partition: 1, offset: 11 }];
  await setPreopens({ "/out": dir });
  const k = (await instance("file-sink")).sink;
  k.open([["path", "/out/records.txt"]], [{ topic: "orders", partition: 1, offset: 9 }]);
  assert.equal(logs[logs.length - 1], "info resuming after orders/1/9");
  k.put(build(records.slice(0, 2)));
  k.put(build(records.slice(2)));
  assert.ok(!fs.existsSync(path.join(dir, "records.txt")));
  assert.deepEqual(k.flush(upTo).map((p) => ({ ...p, offset: Number(p.offset) })), upTo);
  assert.equal(fs.readFileSync(path.join(dir, "records.txt"), "utf8"), "orders/1/10 k0 v0\norders/1/11 k1 v1\norders/0/3 - v2\n");

  const second = (await instance("file-sink")).sink;
  second.open([["path", "/out/second.txt"]], []);
  assert.deepEqual(thrown(() => second.put(build([records[0], { key: "x", value: "y", timestamp: 4 }]))),
    { tag: "bad-record", val: { index: 1, message: "record has no position" } });
  second.flush([]);
  assert.equal(fs.readFileSync(path.join(dir, "second.txt"), "utf8"), "", "nothing of the refused batch was buffered");

  await setPreopens({});
  const denied = (await instance("file-sink")).sink;
  denied.open([["path", "/out/records.txt"]], []);
  denied.put(build(records));
  assert.deepEqual(thrown(() => denied.flush(upTo)), { tag: "retriable", val: "/out/records.txt: No such file or directory" });
});
