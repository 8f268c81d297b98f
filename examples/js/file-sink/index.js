// file-sink: a sink that appends one line per record to a file under a granted directory:
// `<topic>/<partition>/<offset> <key> <value>`, `-` for a null key or value.
//
// `put` only buffers, and only whole batches: a batch with a bad record buffers nothing (the
// runtime dead-letters that record and sends the rest again). `flush` appends the buffered
// lines, syncs the file, clears the buffer and returns every position it was asked for: all
// of them are durable now. A write that fails is reported as retriable and the buffer is kept
// for the retry. `open` logs the positions the runtime committed (lines are appended: at least
// once).
//
// The QuickJS runtime has no `fs` module: files go through the raw WASI 0.2 filesystem
// interfaces, which wit/world.wit adds to the world.
import preopens from "wasi:filesystem/preopens@0.2.12";
import log from "weir:connector/log@0.2.2";
import { BadRecord, Retriable, configValue, defineSink, text, utf8 } from "../../../sdk/js/weir.js";

let path = "";
let buffered = ""; // lines not yet written

function trimSlashes(p) {
  return p.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "");
}

// The preopened directory holding `file` (a guest path) and the path relative to it.
function resolve(file) {
  const want = trimSlashes(file);
  let best;
  for (const [dir, name] of preopens.getDirectories()) {
    const base = trimSlashes(name);
    const fits = base === "" || base === "." || want === base || want.startsWith(base + "/");
    const rest = base === "" || base === "." ? want : want.slice(base.length + 1);
    if (fits && rest !== "" && (best === undefined || base.length > best.base.length)) {
      best = { dir, base, rest };
    }
  }
  if (best === undefined) throw "no-entry"; // what wasi-libc reports for a path outside every preopen
  return best;
}

// WASI error codes in the words of strerror, so messages read like the Python plugin's.
const STRERROR = {
  access: "Permission denied",
  "not-permitted": "Operation not permitted",
  "no-entry": "No such file or directory",
  "not-directory": "Not a directory",
  "is-directory": "Is a directory",
  "read-only": "Read-only file system",
  "insufficient-space": "No space left on device",
  quota: "Disk quota exceeded",
  io: "I/O error",
};

function message(e) {
  const code = e && e.payload !== undefined ? e.payload : e;
  if (typeof code === "string") return STRERROR[code] ?? code;
  if (e && e.message) return e.message;
  return String(e);
}

// Appends `data` to `file`, creating it, and syncs it to disk.
function append(file, data) {
  const { dir, rest } = resolve(file);
  const fd = dir.openAt({ symlinkFollow: true }, rest, { create: true }, { write: true });
  try {
    let at = Number(fd.stat().size);
    let done = 0;
    while (done < data.length) {
      const n = Number(fd.write(data.subarray(done), at));
      done += n;
      at += n;
    }
    fd.sync();
  } finally {
    if (fd[Symbol.dispose]) fd[Symbol.dispose]();
  }
}

const field = (bytes) => (bytes === null ? "-" : text(bytes));

export const sink = defineSink({
  name: "file-sink",
  version: "0.2.0",
  description: "Appends records to a file as lines",
  config: [{ name: "path", type: "string", required: true, doc: "file to append to, under a granted directory" }],

  open(config, committed) {
    for (const p of committed) log.log("info", `resuming after ${p.topic}/${p.partition}/${p.offset}`);
    path = configValue(config, "path");
    buffered = "";
  },

  put(batch) {
    let lines = "";
    for (let i = 0; i < batch.length; i++) {
      const r = batch.get(i);
      if (r.partition < 0 || r.offset < 0) throw new BadRecord(i, "record has no position");
      lines += `${r.topic}/${r.partition}/${r.offset} ${field(r.key)} ${field(r.value)}\n`;
    }
    buffered += lines;
  },

  flush(upTo) {
    try {
      append(path, utf8(buffered));
    } catch (e) {
      throw new Retriable(`${path}: ${message(e)}`);
    }
    buffered = "";
    return upTo;
  },
});
