//! The table of a shard's calls, by id: each call boxed, and the table's
//! slots only pointers (8 bytes a slot; a map from id to box would spend
//! 16, the id twice).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::call::Call;
use crate::proto::ids::{CallId, IdHash};
use crate::proto::timers::sparse;

#[derive(Default)]
pub struct Calls {
    table: HashTable<Box<Call>>,
}

fn hash(id: CallId) -> u64 {
    IdHash.hash_one(id)
}

impl Calls {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, id: &CallId) -> Option<&Call> {
        self.table.find(hash(*id), |c| c.id == *id).map(|c| &**c)
    }

    pub fn get_mut(&mut self, id: &CallId) -> Option<&mut Call> {
        self.table.find_mut(hash(*id), |c| c.id == *id).map(|c| &mut **c)
    }

    /// Adds `call`, whose id must be new.
    pub fn insert(&mut self, call: Box<Call>) {
        self.table.insert_unique(hash(call.id), call, |c| hash(c.id));
    }

    pub fn remove(&mut self, id: &CallId) -> Option<Box<Call>> {
        self.table.find_entry(hash(*id), |c| c.id == *id).ok().map(|e| e.remove().0)
    }

    /// Every call, in no order.
    pub fn values(&self) -> impl Iterator<Item = &Call> {
        self.table.iter().map(|c| &**c)
    }

    /// Gives back the capacity a busier moment left, once three-quarters
    /// empty ([`sparse`]).
    pub fn give_back(&mut self) {
        if sparse(self.table.len(), self.table.capacity()) {
            self.table.shrink_to(2 * self.table.len(), |c| hash(c.id));
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}
