//! A table of values named by an extension of a tenant, `ext@tenant`
//! (the tenant lowercased, [`write_key`]), with an id per name. The
//! registrar keeps its bindings in one; the park keys its calls the same
//! way, without a table of extensions (`park::exts`).
//!
//! The name is stored once, in the entry; the index holds only ids and is
//! keyed by SipHash over the name (a peer chooses it).

use hashbrown::HashTable;

use super::ids::{ExtId, IdMap, Ids, Keyed};

struct Entry<V> {
    /// `ext@tenant`, tenant lowercase.
    name: Box<[u8]>,
    value: V,
}

/// Values by extension name, and by id.
pub struct Named<V> {
    entries: IdMap<ExtId, Entry<V>>,
    index: HashTable<ExtId>,
    hasher: Keyed,
    scratch: Vec<u8>,
}

/// Appends the key of extension `ext` of `tenant`: `ext@tenant`, the
/// tenant lowercased (a domain is case-insensitive, an extension is not).
pub fn write_key(out: &mut Vec<u8>, tenant: &[u8], ext: &[u8]) {
    out.extend_from_slice(ext);
    out.push(b'@');
    out.extend(tenant.iter().map(u8::to_ascii_lowercase));
}

/// The parts of an `ext@tenant` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    pub ext: &'a [u8],
    /// Lowercase.
    pub tenant: &'a [u8],
}

impl<'a> Name<'a> {
    /// The parts of a key [`write_key`] wrote.
    pub fn split(name: &'a [u8]) -> Name<'a> {
        let at = name.iter().position(|&b| b == b'@').unwrap_or(name.len());
        Name { ext: &name[..at], tenant: name.get(at + 1..).unwrap_or_default() }
    }

    /// The tenant as text (a domain is ASCII; anything else shows as empty).
    pub fn tenant_str(&self) -> &'a str {
        std::str::from_utf8(self.tenant).unwrap_or_default()
    }

    /// The extension as text.
    pub fn ext_str(&self) -> &'a str {
        std::str::from_utf8(self.ext).unwrap_or_default()
    }
}

impl<V> Named<V> {
    pub fn new(hasher: Keyed) -> Named<V> {
        Named { entries: IdMap::default(), index: HashTable::new(), hasher, scratch: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&mut self, tenant: &[u8], ext: &[u8]) -> u64 {
        self.scratch.clear();
        write_key(&mut self.scratch, tenant, ext);
        self.hasher.bytes(&self.scratch)
    }

    /// The hash of `ext` of `tenant`, left in `scratch` as `ext@tenant`, and its id.
    fn lookup(&mut self, tenant: &[u8], ext: &[u8]) -> (u64, Option<ExtId>) {
        let hash = self.key(tenant, ext);
        let (entries, key) = (&self.entries, &self.scratch);
        (hash, self.index.find(hash, |id| entries.get(id).is_some_and(|e| *e.name == **key)).copied())
    }

    /// The id of `ext` of `tenant` (any case).
    pub fn find(&mut self, tenant: &[u8], ext: &[u8]) -> Option<ExtId> {
        self.lookup(tenant, ext).1
    }

    /// The id of `ext` of `tenant`, with a new entry `make()` if there is none.
    pub fn find_or_insert(&mut self, ids: &mut Ids, tenant: &[u8], ext: &[u8], make: impl FnOnce() -> V) -> ExtId {
        let (hash, found) = self.lookup(tenant, ext);
        if let Some(id) = found {
            return id;
        }
        let id = ids.ext();
        self.entries.insert(id, Entry { name: self.scratch.as_slice().into(), value: make() });
        let (entries, hasher) = (&self.entries, self.hasher);
        self.index.insert_unique(hash, id, |id| entries.get(id).map_or(0, |e| hasher.bytes(&e.name)));
        id
    }

    pub fn get(&self, id: ExtId) -> Option<&V> {
        self.entries.get(&id).map(|e| &e.value)
    }

    pub fn get_mut(&mut self, id: ExtId) -> Option<&mut V> {
        self.entries.get_mut(&id).map(|e| &mut e.value)
    }

    /// The name of `id`.
    pub fn name(&self, id: ExtId) -> Option<Name<'_>> {
        self.entries.get(&id).map(|e| Name::split(&e.name))
    }

    /// The name and value of `id`.
    pub fn entry(&self, id: ExtId) -> Option<(Name<'_>, &V)> {
        self.entries.get(&id).map(|e| (Name::split(&e.name), &e.value))
    }

    /// Removes `id`.
    pub fn remove(&mut self, id: ExtId) -> Option<V> {
        let e = self.entries.remove(&id)?;
        let hash = self.hasher.bytes(&e.name);
        if let Ok(slot) = self.index.find_entry(hash, |x| *x == id) {
            slot.remove();
        }
        Some(e.value)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ExtId, Name<'_>, &V)> {
        self.entries.iter().map(|(id, e)| (*id, Name::split(&e.name), &e.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ids::Seed;

    #[test]
    fn names_are_found_in_any_tenant_case_and_forgotten() {
        let mut t: Named<u32> = Named::new(Seed::from_u64(1).hasher(5));
        let mut ids = Ids::starting_at(0);
        let a = t.find_or_insert(&mut ids, b"Acme.Example", b"103", || 7);
        assert_eq!(t.find(b"acme.example", b"103"), Some(a));
        assert_eq!(t.find_or_insert(&mut ids, b"ACME.example", b"103", || 9), a, "one entry per name");
        assert_eq!(t.get(a), Some(&7));
        assert_eq!(t.name(a), Some(Name { ext: b"103", tenant: b"acme.example" }));
        assert_eq!(t.find(b"acme.example", b"104"), None);
        let b = t.find_or_insert(&mut ids, b"beta.example", b"103", || 1);
        assert_ne!(a, b, "the same extension in another tenant is another entry");
        for i in 0..1000u32 {
            t.find_or_insert(&mut ids, b"grow.example", i.to_string().as_bytes(), || i);
        }
        assert_eq!(t.find(b"acme.example", b"103"), Some(a), "found after the table grew");
        assert_eq!(t.remove(a), Some(7));
        assert_eq!(t.find(b"acme.example", b"103"), None);
        assert_eq!(t.len(), 1001);
    }
}
