//! `state`: small key/value state private to one task. It lives in the host as long as the
//! task: it survives the recycling of the plugin's instance, not a task restart. Bounded, so a
//! plugin cannot grow the host's memory; `set` says which bound it hit.

use std::collections::HashMap;

use wasmtime::component::{HasData, Linker};

use crate::bindings::weir::connector::state;

const MAX_KEY: usize = 1 << 10;
const MAX_VALUE: usize = 1 << 20;
const MAX_BYTES: usize = 64 << 20;
const MAX_KEYS: usize = 100_000;

/// The `state` capability of one task.
#[derive(Default)]
pub(crate) struct StateCtx {
    kv: HashMap<String, Vec<u8>>,
    /// Bytes of keys and values in `kv`.
    bytes: usize,
}

impl state::Host for StateCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.kv.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.len() > MAX_KEY {
            return Err(format!("state key of {} bytes is over 1 KiB", key.len()));
        }
        if value.len() > MAX_VALUE {
            return Err(format!(
                "state value of {} bytes is over 1 MiB",
                value.len()
            ));
        }
        let old = self.kv.get(&key).map_or(0, |v| key.len() + v.len());
        let total = self.bytes - old + key.len() + value.len();
        if total > MAX_BYTES {
            return Err(format!(
                "task state would hold {total} bytes, over its 64 MiB limit"
            ));
        }
        if old == 0 && !self.kv.contains_key(&key) && self.kv.len() >= MAX_KEYS {
            return Err(format!("task state is full ({MAX_KEYS} keys)"));
        }
        self.bytes = total;
        self.kv.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: String) {
        if let Some(v) = self.kv.remove(&key) {
            self.bytes -= key.len() + v.len();
        }
    }
}

struct HasState;

impl HasData for HasState {
    type Data<'a> = &'a mut StateCtx;
}

pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut StateCtx,
) -> wasmtime::Result<()> {
    state::add_to_linker::<T, HasState>(linker, get)
}
