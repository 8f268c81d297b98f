// file-sink: a sink that appends one line per record to a file under a granted directory.
//
// `put` only buffers; `flush` appends the buffered lines, syncs the file and clears the
// buffer. A write that fails is reported as retriable and the buffer is kept for the retry.
//
// The QuickJS runtime has no `fs` module: files go through the raw WASI 0.2 filesystem
// interfaces, which wit/world.wit adds to the world.
import preopens from "wasi:filesystem/preopens@0.2.12";

let path = "";
let lines = []; // Uint8Array per line

function get(config, name) {
  for (const [k, v] of config) if (k === name) return v;
  return undefined;
}

// UTF-8 bytes of a string (the QuickJS runtime has no TextEncoder).
function utf8(text) {
  const binary = unescape(encodeURIComponent(text));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const REPLACEMENT = [0xef, 0xbf, 0xbd];

// `bytes` decoded as UTF-8 and encoded again: valid sequences are kept, each maximal invalid
// subpart becomes U+FFFD (as Python's and WHATWG's decoders do).
function lossyUtf8(bytes) {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return bytes;
  const out = [];
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let need = 0;
    let lower = 0x80;
    let upper = 0xbf;
    if (b < 0x80) {
      out.push(b);
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lower = 0xa0;
      if (b === 0xed) upper = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lower = 0x90;
      if (b === 0xf4) upper = 0x8f;
    } else {
      out.push(...REPLACEMENT);
      i++;
      continue;
    }
    let j = i + 1;
    let seen = 0;
    while (seen < need && j < bytes.length && bytes[j] >= lower && bytes[j] <= upper) {
      lower = 0x80;
      upper = 0xbf;
      seen++;
      j++;
    }
    if (seen === need) {
      for (let k = i; k < j; k++) out.push(bytes[k]);
    } else {
      out.push(...REPLACEMENT);
    }
    i = j;
  }
  return Uint8Array.from(out);
}

function field(bytes) {
  return bytes === undefined || bytes === null ? utf8("-") : lossyUtf8(bytes);
}

function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

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

export const sink = {
  describe() {
    return {
      name: "file-sink",
      version: "0.1.0",
      kind: "sink",
      description: "Appends records to a file as lines",
      config: [
        {
          name: "path",
          type: "string",
          defaultValue: undefined,
          documentation: "file to append to, under a granted directory",
          required: true,
          secret: false,
        },
      ],
    };
  },

  open(config) {
    const p = get(config, "path");
    if (p === undefined) throw { tag: "invalid-config", val: { key: "path", message: "required" } };
    path = p;
    lines = [];
  },

  put(batch) {
    // Records before a bad one stay buffered (as in the Rust guest).
    const space = utf8(" ");
    const newline = utf8("\n");
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i];
      const p = r.position;
      if (p === undefined || p === null) {
        throw { tag: "bad-record", val: { index: i, message: "record has no position" } };
      }
      lines.push(concat([utf8(`${p.topic}/${p.partition}/${p.offset}`), space, field(r.key), space, field(r.value), newline]));
    }
  },

  flush(upTo) {
    try {
      append(path, concat(lines));
    } catch (e) {
      throw { tag: "retriable", val: `${path}: ${message(e)}` };
    }
    lines = [];
  },

  close() {},
};
