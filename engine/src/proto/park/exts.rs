//! The calls of each extension, with no table of extensions: every call
//! carries its extension's key (`ext@tenant`, [`Home::key`]), and one
//! multi-map from the key's hash to call ids finds the calls of an
//! extension. An extension costs nothing beyond its calls and is gone with
//! its last one; what belongs to its list (the order, the park-info
//! version) is kept in the calls themselves.
//!
//! [`Home::key`]: super::call::Home::key

use hashbrown::HashTable;

use super::call::Call;
use super::calls::Calls;
use crate::proto::ids::{CallId, Keyed};
use crate::proto::named::write_key;
use crate::proto::timers::sparse;

/// The calls of a shard, by extension.
pub struct Exts {
    table: HashTable<CallId>,
    hasher: Keyed,
    /// The key of the last extension looked up by name.
    scratch: Vec<u8>,
}

impl Exts {
    pub fn new(hasher: Keyed) -> Exts {
        Exts { table: HashTable::new(), hasher, scratch: Vec::new() }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.bytes(key)
    }

    /// Indexes `call` under its extension; `calls` holds the calls already
    /// indexed (read back when the table grows).
    pub fn insert(&mut self, call: &Call, calls: &Calls) {
        let hasher = self.hasher;
        self.table.insert_unique(self.hash(call.home.key()), call.id, |id| {
            calls.get(id).map_or(0, |c| hasher.bytes(c.home.key()))
        });
    }

    /// Gives back the capacity a busier moment left, once three-quarters
    /// empty ([`sparse`]); `calls` holds every call indexed.
    pub fn give_back(&mut self, calls: &Calls) {
        if sparse(self.table.len(), self.table.capacity()) {
            let hasher = self.hasher;
            let len = self.table.len();
            self.table.shrink_to(2 * len, |id| calls.get(id).map_or(0, |c| hasher.bytes(c.home.key())));
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Forgets `call`.
    pub fn remove(&mut self, call: &Call) {
        if let Ok(e) = self.table.find_entry(self.hash(call.home.key()), |id| *id == call.id) {
            e.remove();
        }
    }

    /// The calls of the extension whose key is `key`, in no order.
    pub fn calls<'c>(&self, key: &[u8], calls: &'c Calls) -> impl Iterator<Item = &'c Call> {
        self.table.iter_hash(self.hash(key)).filter_map(|id| calls.get(id)).filter(move |c| c.home.key() == key)
    }

    /// Runs `f` on every call of the extension of call `via`, `via`
    /// included.
    pub fn each_mut(&mut self, via: CallId, calls: &mut Calls, mut f: impl FnMut(&mut Call)) {
        let Some(c) = calls.get(&via) else { return };
        self.scratch.clear();
        self.scratch.extend_from_slice(c.home.key());
        for id in self.table.iter_hash(self.hasher.bytes(&self.scratch)) {
            if let Some(c) = calls.get_mut(id)
                && c.home.key() == self.scratch
            {
                f(c);
            }
        }
    }

    /// The calls of extension `ext` of `tenant` (any case), in no order.
    pub fn calls_of<'c>(&mut self, tenant: &[u8], ext: &[u8], calls: &'c Calls) -> impl Iterator<Item = &'c Call> {
        self.scratch.clear();
        write_key(&mut self.scratch, tenant, ext);
        let this = &*self;
        this.calls(&this.scratch, calls)
    }
}
